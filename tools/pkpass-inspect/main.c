/*
 * pkpass-inspect: prints what common/pkpass_reader finds in a .pkpass archive, as JSON on stdout.
 *
 *   pkpass-inspect [--ca FILE]... [--no-check-time] [--attime EPOCH] [--max-bytes N] [--max-entries N]
 *                  [--compact] ARCHIVE|-
 *
 * Exit status: 0 when the verdict is "valid", 1 for any other verdict (the report is printed all the
 * same), 2 when the arguments, a CA file or the archive cannot be read. See README.md beside this file.
 */
#include "common/pkpass_reader.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARCHIVE_BYTES (256u << 20)
#define MAX_CA_FILES      16

static void usage(void)
{
    fprintf(stderr,
            "usage: pkpass-inspect [--ca FILE]... [--no-check-time] [--attime EPOCH] [--max-bytes N]\n"
            "                      [--max-entries N] [--compact] ARCHIVE|-\n");
}

static int parse_number(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* Reads all of path ("-": stdin), at most MAX_ARCHIVE_BYTES. */
static int read_all(const char *path, unsigned char **out, size_t *out_len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "pkpass-inspect: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        abort();
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_ARCHIVE_BYTES) {
                fprintf(stderr, "pkpass-inspect: %s: larger than %u bytes\n", path, MAX_ARCHIVE_BYTES);
                free(buf);
                if (f != stdin)
                    fclose(f);
                return -1;
            }
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "pkpass-inspect: %s: read error\n", path);
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int main(int argc, char **argv)
{
    const char *ca[MAX_CA_FILES], *path = NULL;
    size_t ca_count = 0;
    cm_pkpass_options_t opts = {0};
    int compact = 0, rc = 2;
    unsigned char *data = NULL;
    size_t len = 0;
    cm_pkpass_report_t *report = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        unsigned long long n;
        if (strcmp(a, "--ca") == 0 && i + 1 < argc && ca_count < MAX_CA_FILES) {
            ca[ca_count++] = argv[++i];
        } else if (strcmp(a, "--no-check-time") == 0) {
            opts.ignore_expiry = 1;
        } else if (strcmp(a, "--attime") == 0 && i + 1 < argc && parse_number(argv[i + 1], &n) == 0 &&
                   n > 0) {
            opts.at_time = (time_t)n;
            i++;
        } else if (strcmp(a, "--max-bytes") == 0 && i + 1 < argc && parse_number(argv[i + 1], &n) == 0) {
            opts.max_bytes = (size_t)n;
            i++;
        } else if (strcmp(a, "--max-entries") == 0 && i + 1 < argc && parse_number(argv[i + 1], &n) == 0) {
            opts.max_entries = (size_t)n;
            i++;
        } else if (strcmp(a, "--compact") == 0) {
            compact = 1;
        } else if (path == NULL && (a[0] != '-' || strcmp(a, "-") == 0)) {
            path = a;
        } else {
            usage();
            return 2;
        }
    }
    if (path == NULL) {
        usage();
        return 2;
    }
    if (ca_count > 0) {
        char err[512];
        if (cm_pkpass_trust_load(ca, ca_count, &opts.trust, err, sizeof(err)) != 0) {
            fprintf(stderr, "pkpass-inspect: %s\n", err);
            goto out;
        }
    }
    if (read_all(path, &data, &len) != 0 || cm_pkpass_inspect(data, len, &opts, &report) != 0)
        goto out;
    json_t *j = cm_pkpass_report_json(report);
    if (json_dumpf(j, stdout, compact ? JSON_COMPACT : JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, "pkpass-inspect: cannot write the report\n");
        goto out;
    }
    rc = cm_pkpass_report_verdict(report) == CM_PKPASS_VALID ? 0 : 1;
out:
    cm_pkpass_report_free(report);
    X509_STORE_free(opts.trust);
    free(data);
    return rc;
}
