/*
 * Reading an uploaded pass model (a zip of a folder like Apple's Event.pass) into memory. This is the
 * part of an upload that answers 400: what cannot be read as a pass model at all. Whether Wallet would
 * accept what was read (files, pass.json's content) is common/bundle_files.h's and
 * common/passjson_check.h's, which admin_templates.c runs next (422).
 *
 * Entries are taken as they are, except: directories are skipped; leftovers of macOS and Windows
 * (cm_bundle_files_is_junk: ".DS_Store", "Thumbs.db", "._*", "__MACOSX/") are dropped and their
 * names listed in `ignored`; when every other entry sits in one top-level folder
 * ("Event.pass/pass.json"), that folder is removed from the names.
 * Refused (400): an empty body, not a zip, a damaged entry or compression method, names the signer
 * would not accept in a bundle (cm_bundle_name_is_safe: printable ASCII, no space or backslash, no "."
 * or ".." part) or deeper than one folder ("en.lproj/pass.strings"), two names equal but for case or
 * a file used as a folder, a pass.json that is not strict JSON (with line and column).
 * Limits (common/limits.h): API_TEMPLATE_MAX_FILES files, API_TEMPLATE_MAX_BYTES in all once
 * decompressed (a zip bomb is refused before it is inflated, by the sizes the archive declares, and
 * again while reading), API_TEMPLATE_MAX_IGNORED dropped entries.
 */
#ifndef API_TEMPLATE_ZIP_H
#define API_TEMPLATE_ZIP_H

#include <stddef.h>

#include "common/limits.h"

struct json_t;

#define API_TEMPLATE_MAX_FILES   CM_TEMPLATE_MAX_FILES
#define API_TEMPLATE_MAX_BYTES   CM_TEMPLATE_MAX_BYTES
#define API_TEMPLATE_MAX_IGNORED CM_TEMPLATE_MAX_FILES

typedef struct api_template_file {
    char *name;
    char *data;
    size_t len;
} api_template_file_t;

typedef struct api_template {
    api_template_file_t files[API_TEMPLATE_MAX_FILES];
    size_t count;
    char *ignored[API_TEMPLATE_MAX_IGNORED]; /* dropped entries, made printable */
    size_t ignored_count;
    struct json_t *pass_json; /* the parsed pass.json (any JSON value), NULL when there is none */
} api_template_t;

/* Reads the zip. Returns 0 and fills *out (caller's storage; api_template_dispose), or -1 and *error:
 * a new JSON object {"error": sentence, optional "file", "line", "column"}. */
int api_template_from_zip(const void *zip, size_t len, api_template_t *out, struct json_t **error);
void api_template_dispose(api_template_t *t);

#endif
