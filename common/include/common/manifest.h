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
 * data is borrowed. sha1_hex is NULL, or (borrowed) the 40 lowercase hex digits of SHA-1(data) for a
 * caller that keeps the same bytes for many bundles and hashes them once (the signer's template
 * cache); cm_manifest_build then uses it as it is. */
typedef struct cm_file {
    const char *name;
    const unsigned char *data;
    size_t len;
    const char *sha1_hex;
} cm_file_t;

#define CM_MANIFEST_NAME  "manifest.json"
#define CM_SIGNATURE_NAME "signature"

/* 1 when name is a file the bundle builder owns (manifest.json, signature) and must not take from a
 * template. */
int cm_manifest_is_reserved(const char *name);

/* Builds manifest.json for files[0..count), hashing the files whose sha1_hex is NULL. Returns 0 with
 * *out (NUL-terminated, malloc'd: free with free()) and *out_len (without the NUL). Returns -1 when a
 * name is empty or appears twice (a manifest cannot hold both), or when hashing fails; *out is then
 * untouched. */
int cm_manifest_build(const cm_file_t *files, size_t count, char **out, size_t *out_len);

/* Writes the 40 lowercase hex digits of SHA-1(data[0..len)) and a NUL into hex, as the manifest lists
 * them. Returns 0, or -1 when OpenSSL fails. */
int cm_manifest_sha1_hex(const unsigned char *data, size_t len, char hex[41]);

#endif
