/*
 * The rules the files of a pass follow, beyond pass.json itself (Apple's PassKit package format:
 * "Creating the source for a pass", "Why Wallet rejects a pass"). Pure functions: no I/O,
 * thread-safe.
 *
 * A pass holds, at the top level, pass.json, PNG images (icon.png required) and personalization.json,
 * and localization folders "<language>[-<script>][-<region>].lproj" holding pass.strings and PNG images.
 * manifest.json and signature are the signer's. Leftovers of macOS and Windows (cm_bundle_files_is_junk)
 * are dropped at upload rather than refused.
 */
#ifndef COMMON_BUNDLE_FILES_H
#define COMMON_BUNDLE_FILES_H

#include <stddef.h>

#include "common/manifest.h"
#include "common/problems.h"

/* 1 when name (a path inside an upload) is a file no pass needs and that is dropped without a word:
 * ".DS_Store", "Thumbs.db", "._*" resource forks, anything in a "__MACOSX" folder. */
int cm_bundle_files_is_junk(const char *name);

/* NULL when data[0..len) is a PNG image: the 8-byte PNG signature, then an IHDR chunk with a width
 * and height above 0. Otherwise the problem, as a static sentence ("not a PNG image"). */
const char *cm_bundle_files_png_problem(const unsigned char *data, size_t len);

/* 1 when folder[0..len) is a localization folder name: a language code of 2 or 3 letters, then
 * optionally a script (4 letters) and a region (2 letters or 3 digits), each after '-' or '_',
 * then ".lproj" ("en.lproj", "pt-BR.lproj", "zh-Hans.lproj", "zh_CN.lproj", "es-419.lproj"). */
int cm_bundle_files_lproj_is_valid(const char *folder, size_t len);

/* 0 when data[0..len) is a pass.strings file as cm_pkpass_strings_parse (common/pkpass_strings.h)
 * reads it: UTF-16 with a byte order mark (FF FE or FE FF), or UTF-8 with or without one, holding
 * "key" = "value"; entries, with block and line comments, each key once. Otherwise -1 and that
 * parser's sentence, with its line, in msg ("expected ';' after the entry \"a\" at line 3"). */
int cm_bundle_files_strings_check(const unsigned char *data, size_t len, char *msg, size_t msg_size);

/* Checks the files of a pass model (a template) and appends one problem per broken rule, named by
 * its file (or folder): unexpected files (manifest.json and signature included), PNG images that are
 * not PNG, .lproj folder names, pass.strings, a missing pass.json or top-level icon.png, and an image
 * both at the top level and in a .lproj folder. pass.json's content is cm_passjson_check's. */
void cm_bundle_files_check(const cm_file_t *files, size_t count, cm_problems_t *problems);

/* Checks one file of a pass's own (a per-pass image that replaces the template's file of that name):
 * name is a safe bundle path, at the top level or in a valid .lproj folder, of a PNG image (data),
 * and not an image both at the top level and in a .lproj folder given others[0..nothers), the names
 * of the other files the pass's bundle holds. Appends its problems. */
void cm_bundle_files_check_own(const char *name, const unsigned char *data, size_t len,
                               const char *const *others, size_t nothers, cm_problems_t *problems);

#endif
