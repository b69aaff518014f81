/*
 * One-line structured logging (logfmt) to standard error.
 *
 * CM_LOG(CM_LOG_INFO, "event=template_stored template=%s files=%zu", id, n) prints
 *   ts=2026-12-03T13:50:41.123Z level=info svc=api event=template_stored template=x files=3
 * The level is checked before anything is formatted. Never pass tokens, keys or signatures.
 * Thread-safe: each line is written with a single write(2).
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum cm_log_level { CM_LOG_DEBUG = 0, CM_LOG_INFO = 1, CM_LOG_WARN = 2, CM_LOG_ERROR = 3 };

extern int cm_log_min_level;

/* Sets the service name printed in every line and the minimum level ("debug", "info", "warn",
 * "error"). Returns 0, or -1 for an unknown level name. Call once, before any thread starts. */
int cm_log_init(const char *service, const char *level_name);

void cm_log_write(enum cm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list, for wrappers. */
void cm_log_vwrite(enum cm_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Copies at most len bytes of untrusted text into dst (size bytes, NUL-terminated) for a quoted logfmt
 * value: quotes, backslashes, control characters and bytes outside ASCII become '?'. Returns dst. */
char *cm_log_clean(char *dst, size_t size, const char *src, size_t len);

#define CM_LOG(level, ...)                                                                                   \
    do {                                                                                                     \
        if ((level) >= cm_log_min_level)                                                                     \
            cm_log_write((level), __VA_ARGS__);                                                              \
    } while (0)

#endif
