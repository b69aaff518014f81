/*
 * HTTP-dates (RFC 9110 section 5.6.7) for Last-Modified and If-Modified-Since.
 * Formatting writes the IMF-fixdate form (h2o's formatter); parsing is lenient (libcurl's
 * curl_getdate: IMF-fixdate, RFC 850 and asctime forms), as the spec sheet advises.
 */
#ifndef COMMON_HTTPDATE_H
#define COMMON_HTTPDATE_H

#include <stddef.h>
#include <time.h>

#define CM_HTTPDATE_SIZE 30 /* "Sun, 06 Nov 1994 08:49:37 GMT" + NUL */

/* Writes t as an IMF-fixdate into out (at least CM_HTTPDATE_SIZE bytes). */
void cm_httpdate_format(time_t t, char *out);

/* Parses len bytes of s. Returns 0 and *out, or -1 when it is not an HTTP-date. */
int cm_httpdate_parse(const char *s, size_t len, time_t *out);

#endif
