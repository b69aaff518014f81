/*
 * manifest.json of a pass bundle: a JSON object mapping every file's path inside the bundle to the
 * lowercase hexadecimal SHA-1 of its bytes (Apple's PassKit package format).
 *
 * The output is deterministic: keys are sorted and the JSON is compact, so the same files always give
 * the same bytes (and the same signature input). "manifest.json" and "signature" are never listed,
 * even when given.
 */
#ifndef COMMON_MANIFEST_H
#define COMMON_MANIFEST_H

#include <stddef.h>

/* One file of a bundle. name is its path inside the archive ("icon.png", "en.lproj/pass.strings");
 * data is borrowed. */
typedef struct cm_file {
    const char *name;
    const unsigned char *data;
    size_t len;
} cm_file_t;

#define CM_MANIFEST_NAME  "manifest.json"
#define CM_SIGNATURE_NAME "signature"

/* 1 when name is a file the bundle builder owns (manifest.json, signature) and must not take from a
 * template. */
int cm_manifest_is_reserved(const char *name);

/* Builds manifest.json for files[0..count). Returns 0 with *out (NUL-terminated, malloc'd: free with
 * free()) and *out_len (without the NUL). Returns -1 when a name is empty or appears twice (a manifest
 * cannot hold both), or when hashing fails; *out is then untouched. */
int cm_manifest_build(const cm_file_t *files, size_t count, char **out, size_t *out_len);

#endif
