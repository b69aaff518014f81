/*
 * A .pkpass archive in memory: a ZIP of the given files at the archive root (libzip).
 */
#ifndef COMMON_BUNDLE_ZIP_H
#define COMMON_BUNDLE_ZIP_H

#include <stddef.h>
#include <time.h>

#include "common/manifest.h"

/* Files smaller than this are stored, not deflated. */
#define CM_BUNDLE_ZIP_DEFLATE_MIN 4096u

/* Upper bound of the archive this module produces. */
#define CM_BUNDLE_ZIP_MAX (64u * 1024 * 1024)

/* Writes files[0..count) in that order into a new ZIP archive, each entry stamped with mtime (so the
 * same files and mtime give the same archive). Images (.png, .jpg, .jpeg, .gif, .webp) and files under
 * CM_BUNDLE_ZIP_DEFLATE_MIN bytes are stored, everything else deflated. Entry names are taken as they
 * are; the caller checks them (cm_bundle_name_is_safe). The data is only read during the call.
 * Returns 0 with *out (malloc'd, free with free()) and *out_len, or -1 with a reason in err. */
int cm_bundle_zip(const cm_file_t *files, size_t count, time_t mtime, unsigned char **out, size_t *out_len,
                  char *err, size_t err_size);

/* The same, but every entry is stored uncompressed (for a .pkpasses: its .pkpass files are already
 * compressed) and the archive may be up to max bytes. */
int cm_bundle_zip_stored(const cm_file_t *files, size_t count, time_t mtime, size_t max, unsigned char **out,
                         size_t *out_len, char *err, size_t err_size);

/* 1 when name is acceptable as a path inside a bundle: 1..255 bytes of printable ASCII without '\\',
 * relative, no empty, "." or ".." segment, not ending in '/'. */
int cm_bundle_name_is_safe(const char *name);

#endif
