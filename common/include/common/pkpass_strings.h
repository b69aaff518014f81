/*
 * pass.strings, the localized strings of a pass (en.lproj/pass.strings): lines of "key" = "value";
 * in Apple's old-style property list syntax. Apple asks for UTF-16; UTF-8 is read too. The one parser
 * of these files: the bundle reader uses it, and so does the check at upload (common/bundle_files.h).
 */
#ifndef COMMON_PKPASS_STRINGS_H
#define COMMON_PKPASS_STRINGS_H

#include <stddef.h>

struct json_t;

/* Decodes data[0..len) (UTF-16 big or little endian with a byte order mark, else UTF-8 with or without
 * one) and parses its entries: "key" = "value"; with C and C++ comments, the escapes \" \\ \' \n \t \r
 * \a \b \f \v \? and \Uxxxx / \uxxxx (UTF-16 units, surrogate pairs joined), unquoted words
 * ([A-Za-z0-9_.$:/-]) and the short form "key"; (value = key). Returns 0 with *out a new JSON object
 * key -> value (json_decref it) and *encoding "utf-16be", "utf-16le" or "utf-8" (static); or -1 with
 * the reason and its line in err, *out untouched. A key that appears twice is an error (which value
 * Wallet shows is not documented). */
int cm_pkpass_strings_parse(const void *data, size_t len, struct json_t **out, const char **encoding,
                            char *err, size_t err_size);

#endif
