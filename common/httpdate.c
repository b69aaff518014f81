/* HTTP-date formatting (h2o) and lenient parsing (libcurl); see common/httpdate.h. */
#include "common/httpdate.h"

#include <curl/curl.h>
#include <h2o/time_.h>
#include <string.h>

void cm_httpdate_format(time_t t, char *out)
{
    struct tm gmt;
    gmtime_r(&t, &gmt);
    h2o_time2str_rfc1123(out, &gmt);
}

int cm_httpdate_parse(const char *s, size_t len, time_t *out)
{
    char buf[64];
    if (s == NULL || len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* curl_getdate also accepts bare numbers and words like "today"; an HTTP-date has a letter
     * first (a weekday) and at least a four-digit year, which rules those out. */
    if (!((buf[0] >= 'A' && buf[0] <= 'Z') || (buf[0] >= 'a' && buf[0] <= 'z')) || len < 20)
        return -1;
    time_t t = curl_getdate(buf, NULL);
    if (t == (time_t)-1)
        return -1;
    *out = t;
    return 0;
}
