/* Uploaded pass models, read with libzip from memory; see template_zip.h. */
#include "template_zip.h"
#include "common/bundle_files.h"
#include "common/bundle_zip.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zip.h>

static json_t *error_new(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Entry names are raw bytes: anything but printable ASCII becomes '?' before it goes into JSON. */
static void printable(char *s)
{
    for (; *s; s++)
        if (*s < ' ' || *s > '~')
            *s = '?';
}

static json_t *error_new(const char *file, const char *fmt, ...)
{
    char msg[512], name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printable(msg);
    json_t *e = json_pack("{s:s}", "error", msg);
    if (e == NULL)
        abort();
    if (file != NULL) {
        snprintf(name, sizeof(name), "%s", file);
        printable(name);
        json_object_set_new(e, "file", json_string(name));
    }
    return e;
}

/* Directory entries carry no file. */
static int is_directory(const char *name)
{
    size_t n = strlen(name);
    return n == 0 || name[n - 1] == '/';
}

static int is_safe_name(const char *name)
{
    if (!cm_bundle_name_is_safe(name))
        return 0;
    const char *slash = strchr(name, '/');
    return slash == NULL || strchr(slash + 1, '/') == NULL;
}

/* The folder every entry but the junk shares ("Event.pass/", copied into prefix), or 0 when pass.json is
 * at the root or entries differ. */
static size_t common_folder(zip_t *za, zip_int64_t entries, char *prefix, size_t prefix_size)
{
    const char *first = NULL;
    size_t plen = 0;
    for (zip_int64_t i = 0; i < entries; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (name == NULL || cm_bundle_files_is_junk(name))
            continue;
        if (strcmp(name, "pass.json") == 0)
            return 0;
        if (first == NULL) {
            const char *slash = strchr(name, '/');
            if (slash == NULL)
                return 0;
            first = name;
            plen = (size_t)(slash - name) + 1;
        } else if (strncmp(name, first, plen) != 0) {
            return 0;
        }
    }
    if (first == NULL || plen >= prefix_size)
        return 0;
    memcpy(prefix, first, plen);
    prefix[plen] = '\0';
    return plen;
}

static const api_template_file_t *find(const api_template_t *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->files[i].name, name) == 0)
            return &t->files[i];
    return NULL;
}

int api_template_from_zip(const void *zip, size_t len, api_template_t *out, json_t **error)
{
    zip_error_t zerr;
    zip_t *za = NULL;
    zip_file_t *zf = NULL;
    json_t *err = NULL;
    size_t total = 0;
    memset(out, 0, sizeof(*out));
    zip_error_init(&zerr);
    if (len == 0) {
        err = error_new(NULL, "the body is empty: send the zip of a pass model");
        goto out;
    }
    zip_source_t *src = zip_source_buffer_create(zip, len, 0, &zerr);
    if (src == NULL || (za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr)) == NULL) {
        /* libzip's consistency check reports two entries of one name as "File already exists". */
        err = zip_error_code_zip(&zerr) == ZIP_ER_EXISTS
                  ? error_new(NULL, "the zip holds two entries with the same name: each file of a pass model "
                                    "appears once")
                  : error_new(NULL, "the body is not a zip archive of a pass model (%s)",
                              zip_error_strerror(&zerr));
        zip_source_free(src);
        goto out;
    }
    zip_int64_t entries = zip_get_num_entries(za, 0);
    char folder[256];
    size_t strip = common_folder(za, entries, folder, sizeof(folder));
    for (zip_int64_t i = 0; i < entries; i++) {
        zip_stat_t st;
        if (zip_stat_index(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
            !(st.valid & ZIP_STAT_SIZE)) {
            err = error_new(NULL, "zip entry %lld cannot be read", (long long)i);
            goto out;
        }
        if (is_directory(st.name))
            continue;
        /* junk outside the folder ("__MACOSX/Event.pass/._icon.png") keeps its whole name */
        const char *name = st.name + (strip > 0 && strncmp(st.name, folder, strip) == 0 ? strip : 0);
        if (cm_bundle_files_is_junk(st.name)) {
            if (out->ignored_count == API_TEMPLATE_MAX_IGNORED) {
                err = error_new(NULL,
                                "the zip holds more than %d files that do not belong in a pass (.DS_Store, "
                                "Thumbs.db, ._*, __MACOSX/)",
                                API_TEMPLATE_MAX_IGNORED);
                goto out;
            }
            char *copy = strdup(name);
            if (copy == NULL)
                abort();
            printable(copy);
            out->ignored[out->ignored_count++] = copy;
            continue;
        }
        if (!is_safe_name(name)) {
            err = error_new(st.name,
                            "file name \"%s\" is not allowed (printable ASCII without spaces, relative, no "
                            "\".\" or \"..\" part, at most one folder)",
                            st.name);
            goto out;
        }
        if (find(out, name) != NULL) {
            err = error_new(name, "file \"%s\" appears twice", name);
            goto out;
        }
        if (out->count == API_TEMPLATE_MAX_FILES) {
            err = error_new(NULL, "a pass model has at most %d files", API_TEMPLATE_MAX_FILES);
            goto out;
        }
        if (st.size > API_TEMPLATE_MAX_BYTES - total) {
            err = error_new(name, "the pass model is larger than %u bytes once decompressed",
                            API_TEMPLATE_MAX_BYTES);
            goto out;
        }
        api_template_file_t *f = &out->files[out->count];
        f->data = malloc(st.size + 1);
        f->name = strdup(name);
        if (f->data == NULL || f->name == NULL)
            abort();
        out->count++;
        zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
        if (zf == NULL && zip_error_code_zip(zip_get_error(za)) == ZIP_ER_COMPNOTSUPP) {
            err = error_new(
                name, "file \"%s\" uses a compression method this server cannot read (use deflate)", name);
            goto out;
        }
        zip_int64_t got = zf != NULL ? zip_fread(zf, f->data, st.size) : -1;
        char extra;
        if (got < 0 || (zip_uint64_t)got != st.size || zip_fread(zf, &extra, 1) != 0) {
            err = error_new(name, "file \"%s\" is damaged in the zip archive", name);
            goto out;
        }
        zip_fclose(zf);
        zf = NULL;
        f->len = st.size;
        f->data[f->len] = '\0';
        total += st.size;
    }
    /* Names that differ only in case, or a file that is also a folder ("pass.json" and "pass.json/x"),
     * make archives that cannot be unpacked everywhere: refuse them. */
    for (size_t i = 0; i < out->count; i++) {
        const char *a = out->files[i].name;
        for (size_t j = 0; j < out->count; j++) {
            const char *b = out->files[j].name;
            size_t al = strlen(a);
            if ((j > i && strcasecmp(a, b) == 0) || (strncmp(b, a, al) == 0 && b[al] == '/')) {
                err =
                    error_new(b,
                              "file \"%s\" clashes with \"%s\" (same name but for case, or a file used as a "
                              "folder)",
                              b, a);
                goto out;
            }
        }
    }
    const api_template_file_t *pass = find(out, "pass.json");
    if (pass != NULL) {
        json_error_t jerr;
        out->pass_json = json_loadb(pass->data, pass->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (out->pass_json == NULL) {
            /* jansson reports a trailing comma as a missing string before the closing bracket. */
            int trailing_comma =
                strstr(jerr.text, "expected near '}'") != NULL || strstr(jerr.text, "expected near ']'");
            err = error_new("pass.json", "pass.json is not valid JSON: %s at line %d, column %d%s", jerr.text,
                            jerr.line, jerr.column,
                            trailing_comma ? " (is there a trailing comma before it?)" : "");
            json_object_set_new(err, "line", json_integer(jerr.line));
            json_object_set_new(err, "column", json_integer(jerr.column));
            goto out;
        }
    }
out:
    if (zf != NULL)
        zip_fclose(zf);
    if (za != NULL)
        zip_discard(za);
    zip_error_fini(&zerr);
    if (err != NULL) {
        api_template_dispose(out);
        *error = err;
        return -1;
    }
    return 0;
}

void api_template_dispose(api_template_t *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->files[i].name);
        free(t->files[i].data);
    }
    for (size_t i = 0; i < t->ignored_count; i++)
        free(t->ignored[i]);
    json_decref(t->pass_json);
    t->pass_json = NULL;
    t->count = 0;
    t->ignored_count = 0;
}
