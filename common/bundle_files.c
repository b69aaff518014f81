/*
 * File-level rules of a pass; see common/bundle_files.h.
 *
 * pass.strings is read by the one pass.strings parser (common/pkpass_strings.h), the bundle reader's
 * too. Nothing else here parses: PNG is recognised by its signature and header chunk only.
 */
#include "common/bundle_files.h"
#include "common/bundle_zip.h"
#include "common/pkpass_strings.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LPROJ         ".lproj"
#define LPROJ_LEN     (sizeof(LPROJ) - 1)
#define MSG_NOT_LPROJ "is not a localization folder: a pass holds only .lproj folders (like en.lproj)"
#define MSG_BAD_LPROJ                                                                                        \
    "is not a localization folder name: use a language code of 2 or 3 letters, optionally with a script "    \
    "or region (en.lproj, pt-BR.lproj, zh-Hans.lproj)"
#define MSG_BOTH                                                                                             \
    "is also at the top level: an image goes either at the top level or in .lproj folders, not both"

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int cm_bundle_files_is_junk(const char *name)
{
    const char *seg = name;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t len = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        if (len == 8 && memcmp(seg, "__MACOSX", 8) == 0)
            return 1;
        if (slash == NULL)
            break;
        seg = slash + 1;
    }
    return strcmp(seg, ".DS_Store") == 0 || strcasecmp(seg, "Thumbs.db") == 0 || strncmp(seg, "._", 2) == 0;
}

const char *cm_bundle_files_png_problem(const unsigned char *data, size_t len)
{
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char ihdr[8] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    if (len < sizeof(signature) || memcmp(data, signature, sizeof(signature)) != 0)
        return "not a PNG image";
    /* signature, IHDR length and type, 13 bytes of data, CRC */
    if (len < 8 + 8 + 13 + 4 || memcmp(data + 8, ihdr, sizeof(ihdr)) != 0)
        return "not a PNG image: no IHDR chunk after the PNG signature";
    uint32_t width = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
    uint32_t height =
        (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
    if (width == 0 || height == 0)
        return "not a PNG image: its IHDR chunk gives a width or height of 0";
    return NULL;
}

static size_t letters(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z')))
        n++;
    return n;
}

static size_t decimal_digits(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

int cm_bundle_files_lproj_is_valid(const char *folder, size_t len)
{
    if (!ends_with(folder, len, LPROJ))
        return 0;
    len -= LPROJ_LEN;
    size_t n = letters(folder, len), i = n;
    if (n < 2 || n > 3)
        return 0;
    int script_ok = 1, region_ok = 1;
    while (i < len) {
        if (folder[i] != '-' && folder[i] != '_')
            return 0;
        i++;
        size_t a = letters(folder + i, len - i), d = decimal_digits(folder + i, len - i);
        if (a == 4 && script_ok && region_ok) {
            script_ok = 0;
            i += 4;
        } else if (((a == 2 && d == 0) || (d == 3 && a == 0)) && region_ok) {
            script_ok = region_ok = 0;
            i += a + d;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- pass.strings ---- */

int cm_bundle_files_strings_check(const unsigned char *data, size_t len, char *msg, size_t msg_size)
{
    json_t *entries = NULL;
    const char *encoding = NULL;
    if (cm_pkpass_strings_parse(data, len, &entries, &encoding, msg, msg_size) != 0)
        return -1;
    json_decref(entries);
    return 0;
}

/* ---- whole pass models ---- */

/* 1 when an earlier file (files[0..i)) lies in the same folder as files[i]. */
static int folder_seen_before(const cm_file_t *files, size_t i, size_t folder_len)
{
    for (size_t j = 0; j < i; j++)
        if (strncmp(files[j].name, files[i].name, folder_len + 1) == 0)
            return 1;
    return 0;
}

static int has_name(const cm_file_t *files, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(files[i].name, name) == 0)
            return 1;
    return 0;
}

static void check_png(const char *name, const unsigned char *data, size_t len, cm_problems_t *p)
{
    const char *problem = cm_bundle_files_png_problem(data, len);
    if (problem != NULL)
        cm_problems_add_file(p, name, "%s", problem);
}

/* A file inside a folder: the folder's name once per folder, then the file itself. */
static void check_in_folder(const cm_file_t *files, size_t count, size_t i, cm_problems_t *p)
{
    const cm_file_t *f = &files[i];
    const char *slash = strchr(f->name, '/'), *base = slash + 1;
    size_t folder_len = (size_t)(slash - f->name);
    char msg[256];
    if (!ends_with(f->name, folder_len, LPROJ) || !cm_bundle_files_lproj_is_valid(f->name, folder_len)) {
        if (!folder_seen_before(files, i, folder_len)) {
            char folder[256];
            snprintf(folder, sizeof(folder), "%.*s", (int)folder_len, f->name);
            cm_problems_add_file(p, folder, "%s",
                                 ends_with(f->name, folder_len, LPROJ) ? MSG_BAD_LPROJ : MSG_NOT_LPROJ);
        }
        if (!ends_with(f->name, folder_len, LPROJ))
            return; /* what such a folder holds does not matter */
    }
    if (strcmp(base, "pass.strings") == 0) {
        if (cm_bundle_files_strings_check(f->data, f->len, msg, sizeof(msg)) != 0)
            cm_problems_add_file(p, f->name, "%s", msg);
    } else if (ends_with(base, strlen(base), ".png")) {
        check_png(f->name, f->data, f->len, p);
        if (has_name(files, count, base))
            cm_problems_add_file(p, f->name, "%s %s", base, MSG_BOTH);
    } else {
        cm_problems_add_file(p, f->name,
                             "does not belong in a .lproj folder (it holds pass.strings and PNG images)");
    }
}

void cm_bundle_files_check(const cm_file_t *files, size_t count, cm_problems_t *p)
{
    for (size_t i = 0; i < count; i++) {
        const char *name = files[i].name;
        if (strchr(name, '/') != NULL) {
            check_in_folder(files, count, i, p);
        } else if (strcmp(name, "pass.json") == 0 || strcmp(name, "personalization.json") == 0) {
            continue; /* their content is checked elsewhere */
        } else if (strcasecmp(name, CM_MANIFEST_NAME) == 0 || strcasecmp(name, CM_SIGNATURE_NAME) == 0) {
            cm_problems_add_file(
                p, name, "is made by the signer when it signs the pass: leave it out of the pass model");
        } else if (ends_with(name, strlen(name), ".png")) {
            check_png(name, files[i].data, files[i].len, p);
        } else {
            cm_problems_add_file(
                p, name,
                "does not belong in a pass (a pass model holds pass.json, PNG images and .lproj "
                "folders)");
        }
    }
    if (!has_name(files, count, "pass.json"))
        cm_problems_add_file(p, "pass.json", "is required");
    if (!has_name(files, count, "icon.png"))
        cm_problems_add_file(p, "icon.png",
                             "is required at the top level: Wallet refuses a pass without an icon");
}

void cm_bundle_files_check_own(const char *name, const unsigned char *data, size_t len,
                               const char *const *others, size_t nothers, cm_problems_t *p)
{
    const char *slash = strchr(name, '/');
    if (!cm_bundle_name_is_safe(name) || (slash != NULL && strchr(slash + 1, '/') != NULL)) {
        cm_problems_add_file(
            p, name,
            "is not an allowed file name (printable ASCII without spaces, no \".\" or \"..\" "
            "part, at most one folder)");
        return;
    }
    if (cm_bundle_files_is_junk(name)) {
        cm_problems_add_file(
            p, name,
            "is a leftover of macOS or Windows (.DS_Store, ._*, Thumbs.db), not a file of the "
            "pass");
        return;
    }
    const char *base = slash != NULL ? slash + 1 : name;
    if (!ends_with(base, strlen(base), ".png")) {
        cm_problems_add_file(p, name,
                             "is not a PNG image name: a pass's own files are images (*.png) at the top "
                             "level or in a .lproj folder");
        return;
    }
    if (slash != NULL && !cm_bundle_files_lproj_is_valid(name, (size_t)(slash - name))) {
        char folder[256];
        snprintf(folder, sizeof(folder), "%.*s", (int)(slash - name), name);
        cm_problems_add_file(p, folder, "%s",
                             ends_with(name, (size_t)(slash - name), LPROJ) ? MSG_BAD_LPROJ : MSG_NOT_LPROJ);
    }
    check_png(name, data, len, p);
    for (size_t i = 0; i < nothers; i++) {
        const char *o = others[i], *oslash = strchr(o, '/');
        if (strcasecmp(o, name) == 0 && strcmp(o, name) != 0) {
            /* the bundle would hold two names a case-insensitive file system (the phone's) confuses */
            cm_problems_add_file(p, name, "differs from %s only in case: use that name to replace it", o);
        } else if (slash != NULL && strcmp(o, base) == 0) {
            cm_problems_add_file(p, name, "%s %s", base, MSG_BOTH);
        } else if (slash == NULL && oslash != NULL && strcmp(oslash + 1, name) == 0) {
            cm_problems_add_file(
                p, name,
                "is also in %s: an image goes either at the top level or in .lproj folders, not "
                "both",
                o);
            break;
        }
    }
}
