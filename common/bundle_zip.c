/*
 * In-memory ZIP writer for pass bundles; see common/bundle_zip.h.
 *
 * libzip writes into a buffer source opened as an archive (zip_open_from_source). zip_source_keep
 * keeps that source alive across zip_close so the finished bytes can be read back from it.
 *
 * Images are stored, not deflated: PNG and JPEG data is compressed already, deflate gains nothing on
 * it and was most of the signer's CPU time per bundle (a pass's images are typically 100-300 KB).
 * Files under CM_BUNDLE_ZIP_DEFLATE_MIN are stored too: deflating a 1 KB pass.json saves a few hundred
 * bytes but costs a deflate stream set-up (zlib allocates and clears about 256 KB for it), which
 * showed up as a tenth of the signing time of a small pass.
 */
#include "common/bundle_zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zip.h>

int cm_bundle_name_is_safe(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 255 || name[0] == '/' || name[len - 1] == '/')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] < '!' || name[i] > '~' || name[i] == '\\')
            return 0;
    const char *seg = name;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (slash == NULL)
            return 1;
        seg = slash + 1;
    }
}

/* 1 when name's extension is an already-compressed image format, or the file is too small to be worth
 * deflating. */
static int store_as_is(const char *name, size_t len_bytes)
{
    if (len_bytes < CM_BUNDLE_ZIP_DEFLATE_MIN)
        return 1;
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".gif", ".webp"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        size_t el = strlen(exts[i]);
        if (len > el && strcasecmp(name + len - el, exts[i]) == 0)
            return 1;
    }
    return 0;
}

/* The archive of files[0..count), at most max bytes: every entry stored when store_all, else images and
 * small files stored and the rest deflated. */
static int zip_files(const cm_file_t *files, size_t count, time_t mtime, int store_all, size_t max,
                     unsigned char **out, size_t *out_len, char *err, size_t err_size)
{
    int rc = -1;
    zip_error_t ze;
    zip_t *za = NULL;
    unsigned char *buf = NULL;
    int src_open = 0;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (src == NULL) {
        snprintf(err, err_size, "zip_source_buffer_create: %s", zip_error_strerror(&ze));
        goto out;
    }
    za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    if (za == NULL) {
        snprintf(err, err_size, "zip_open_from_source: %s", zip_error_strerror(&ze));
        goto out;
    }
    zip_source_keep(src);
    for (size_t i = 0; i < count; i++) {
        zip_source_t *fs = zip_source_buffer(za, files[i].data, files[i].len, 0);
        zip_int64_t idx = fs != NULL ? zip_file_add(za, files[i].name, fs, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0) {
            snprintf(err, err_size, "zip_file_add %s: %s", files[i].name, zip_strerror(za));
            zip_source_free(fs);
            goto out;
        }
        if ((store_all || store_as_is(files[i].name, files[i].len)) &&
            zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) != 0) {
            snprintf(err, err_size, "zip_set_file_compression %s: %s", files[i].name, zip_strerror(za));
            goto out;
        }
        if (zip_file_set_mtime(za, (zip_uint64_t)idx, mtime, 0) != 0) {
            snprintf(err, err_size, "zip_file_set_mtime %s: %s", files[i].name, zip_strerror(za));
            goto out;
        }
    }
    if (zip_close(za) != 0) {
        snprintf(err, err_size, "zip_close: %s", zip_strerror(za));
        goto out;
    }
    za = NULL;
    zip_stat_t st;
    if (zip_source_stat(src, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) || st.size > max) {
        snprintf(err, err_size, "zip archive size unknown or above %zu bytes", max);
        goto out;
    }
    if (zip_source_open(src) != 0) {
        snprintf(err, err_size, "zip_source_open: %s", zip_error_strerror(zip_source_error(src)));
        goto out;
    }
    src_open = 1;
    buf = malloc(st.size > 0 ? st.size : 1);
    if (buf == NULL)
        abort();
    if (zip_source_read(src, buf, st.size) != (zip_int64_t)st.size) {
        snprintf(err, err_size, "zip_source_read: %s", zip_error_strerror(zip_source_error(src)));
        goto out;
    }
    *out = buf;
    *out_len = st.size;
    buf = NULL;
    rc = 0;
out:
    if (za != NULL)
        zip_discard(za);
    if (src_open)
        zip_source_close(src);
    if (src != NULL)
        zip_source_free(src);
    free(buf);
    zip_error_fini(&ze);
    return rc;
}

int cm_bundle_zip(const cm_file_t *files, size_t count, time_t mtime, unsigned char **out, size_t *out_len,
                  char *err, size_t err_size)
{
    return zip_files(files, count, mtime, 0, CM_BUNDLE_ZIP_MAX, out, out_len, err, err_size);
}

int cm_bundle_zip_stored(const cm_file_t *files, size_t count, time_t mtime, size_t max, unsigned char **out,
                         size_t *out_len, char *err, size_t err_size)
{
    return zip_files(files, count, mtime, 1, max, out, out_len, err, err_size);
}
