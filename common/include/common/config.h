/*
 * Configuration from environment variables, declared as one table per service.
 *
 * Each service lists its variables (name, type, default, bounds, secret) and calls cm_config_load()
 * once at start. Every bad variable is reported (one log line each) before it returns -1, so an
 * operator sees all mistakes at once; the service then exits non-zero before opening a socket.
 * cm_config_log() prints the effective configuration with secrets redacted.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stddef.h>

enum cm_config_type { CM_CONFIG_STRING, CM_CONFIG_INT };

typedef struct cm_config_var {
    const char *name;
    enum cm_config_type type;
    const char *default_value; /* NULL: the variable is required */
    long min, max;             /* bounds for CM_CONFIG_INT */
    int secret;                /* redacted in cm_config_log() */
    void *target; /* const char ** for STRING (borrowed from environ or default), long * for INT */
    const char *help;
} cm_config_var_t;

/* Reads every variable of the table into its target. Returns 0, or -1 after logging each problem. */
int cm_config_load(const cm_config_var_t *vars, size_t count);

/* Logs one line with every variable's effective value, secrets as "(set)"/"(unset)". */
void cm_config_log(const cm_config_var_t *vars, size_t count);

#endif
