/*
 * --stats-file: the stand-in's counters as one small JSON object, for tests that want totals
 * without reading the whole record. main.c writes it every second and at exit; it always goes
 * through a temporary file renamed into place, so a reader never sees half of it.
 */
#include "standin.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int standin_stats_write(const standin_stats_t *st, const char *path)
{
    char tmp[4096];
    int rc = -1;
    FILE *f = NULL;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        goto out;
    }
    f = fopen(tmp, "w");
    if (f == NULL)
        goto out;
    fprintf(f, "{\"requests\":%llu,\"answered_by_status\":{", (unsigned long long)standin_record_count());
    const char *sep = "";
    for (int s = 0; s < 600; s++) {
        if (st->answered_by_status[s] != 0) {
            fprintf(f, "%s\"%d\":%llu", sep, s, (unsigned long long)st->answered_by_status[s]);
            sep = ",";
        }
    }
    fprintf(f, "},\"connections\":%llu,\"goaways_sent\":%llu,\"max_open_streams\":%lu}\n",
            (unsigned long long)st->connections, (unsigned long long)st->goaways_sent,
            (unsigned long)st->max_open_streams);
    if (ferror(f) || fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (rc != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=stats_failed file=\"%s\" err=\"%s\"", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}
