/* logfmt lines on stderr; see common/log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int cm_log_min_level = CM_LOG_INFO;
static char service_name[32] = "passkit";
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int cm_log_init(const char *service, const char *level_name)
{
    snprintf(service_name, sizeof(service_name), "%s", service);
    for (int i = 0; i < 4; i++) {
        if (strcmp(level_name, level_names[i]) == 0) {
            cm_log_min_level = i;
            return 0;
        }
    }
    return -1;
}

void cm_log_vwrite(enum cm_log_level level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s svc=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level], service_name);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void cm_log_write(enum cm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_log_vwrite(level, fmt, ap);
    va_end(ap);
}

char *cm_log_clean(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = len < size - 1 ? len : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    dst[n] = '\0';
    return dst;
}
