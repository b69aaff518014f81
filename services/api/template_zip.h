/*
 * Reading an uploaded pass model (a zip of a folder like Apple's Event.pass) into memory, and checking
 * what issue 2 requires of it: a strict-JSON pass.json object and an icon.png.
 *
 * Entries are taken as they are, except: directories, "__MACOSX/" resource forks and ".DS_Store" files
 * are dropped; "manifest.json" and "signature" are dropped (the signer makes them); when every entry
 * sits in one top-level folder ("Event.pass/pass.json"), that folder is removed from the names.
 * Names must be what the signer accepts in a bundle (cm_bundle_name_is_safe: printable ASCII, no space
 * or backslash, no "." or ".." part) and at most one folder deep ("en.lproj/pass.strings").
 * Limits (common/limits.h): API_TEMPLATE_MAX_FILES files, API_TEMPLATE_MAX_BYTES in all once
 * decompressed (a zip bomb is refused before it is inflated, by the sizes the archive declares, and
 * again while reading).
 */
#ifndef API_TEMPLATE_ZIP_H
#define API_TEMPLATE_ZIP_H

#include <stddef.h>

#include "common/limits.h"

struct json_t;

#define API_TEMPLATE_MAX_FILES CM_TEMPLATE_MAX_FILES
#define API_TEMPLATE_MAX_BYTES CM_TEMPLATE_MAX_BYTES

typedef struct api_template_file {
    char *name;
    char *data;
    size_t len;
} api_template_file_t;

typedef struct api_template {
    api_template_file_t files[API_TEMPLATE_MAX_FILES];
    size_t count;
} api_template_t;

/* Parses and checks the zip. Returns 0 and fills *out (caller's storage; api_template_dispose), or -1
 * and *error: a new JSON object {"error": sentence, optional "file", "line", "column"}. */
int api_template_from_zip(const void *zip, size_t len, api_template_t *out, struct json_t **error);
void api_template_dispose(api_template_t *t);

#endif
