/* Table-driven environment configuration; see common/config.h. */
#include "common/config.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cm_config_load(const cm_config_var_t *vars, size_t count)
{
    int bad = 0;
    for (size_t i = 0; i < count; i++) {
        const cm_config_var_t *v = &vars[i];
        const char *value = getenv(v->name);
        if (value == NULL || value[0] == '\0')
            value = v->default_value;
        if (value == NULL) {
            CM_LOG(CM_LOG_ERROR, "event=config_invalid var=%s reason=\"required but not set\" help=\"%s\"",
                   v->name, v->help);
            bad = 1;
            continue;
        }
        if (v->type == CM_CONFIG_STRING) {
            *(const char **)v->target = value;
            continue;
        }
        char *end;
        errno = 0;
        long n = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || n < v->min || n > v->max) {
            CM_LOG(CM_LOG_ERROR,
                   "event=config_invalid var=%s value=\"%s\" reason=\"not an integer in [%ld, %ld]\"",
                   v->name, value, v->min, v->max);
            bad = 1;
            continue;
        }
        *(long *)v->target = n;
    }
    return bad ? -1 : 0;
}

void cm_config_log(const cm_config_var_t *vars, size_t count)
{
    char line[1536];
    size_t off = 0;
    for (size_t i = 0; i < count && off < sizeof(line); i++) {
        const cm_config_var_t *v = &vars[i];
        int n;
        if (v->secret)
            n = snprintf(line + off, sizeof(line) - off, " %s=%s", v->name,
                         (*(const char **)v->target != NULL && (*(const char **)v->target)[0] != '\0')
                             ? "(set)"
                             : "(unset)");
        else if (v->type == CM_CONFIG_STRING)
            n = snprintf(line + off, sizeof(line) - off, " %s=\"%s\"", v->name, *(const char **)v->target);
        else
            n = snprintf(line + off, sizeof(line) - off, " %s=%ld", v->name, *(long *)v->target);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    CM_LOG(CM_LOG_INFO, "event=config%s", line);
}
