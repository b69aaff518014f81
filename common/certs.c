/*
 * Pass type certificates of CERTS_DIR; see common/certs.h.
 *
 * The loader never stops at the first problem: it checks every folder and appends one sentence per
 * problem to err, so an operator fixes a misconfigured directory in one pass. Identities are sorted
 * by pass type identifier so that listings (logs, Redis publication) come out in a stable order.
 *
 * cm_certs_load_checked() shares the folder walk but judges each pass type on its own: a refused one is
 * reported and left out, so a service that reloads can keep the others (and its older copy of the
 * refused one, through cm_certs_add, which shares the certificate and key by reference count).
 */
#include "common/certs.h"
#include "common/ids.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MAX_PASS_TYPES 256

struct cm_certs {
    X509 *wwdr;
    char *wwdr_source; /* the WWDR's path or CM_CERTS_BUILTIN_WWDR; NULL without a WWDR */
    cm_pass_identity_t *ids;
    size_t count, cap;
};

/* Appends one problem to err, separated from the previous ones by "; ". Truncates silently. */
__attribute__((format(printf, 3, 4))) static void add_problem(char *err, size_t err_size, const char *fmt,
                                                              ...)
{
    size_t used = strnlen(err, err_size);
    if (used + 1 >= err_size)
        return;
    if (used > 0) {
        int n = snprintf(err + used, err_size - used, "; ");
        if (n < 0 || (size_t)n >= err_size - used)
            return;
        used += (size_t)n;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, err_size - used, fmt, ap);
    va_end(ap);
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p == NULL)
        abort();
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

/* Refuses to prompt: an encrypted key is reported as unreadable instead of blocking on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static X509 *read_cert(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        add_problem(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (x == NULL)
        add_problem(err, err_size, "%s: not a PEM certificate", path);
    ERR_clear_error();
    return x;
}

static EVP_PKEY *read_key(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        add_problem(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (k == NULL)
        add_problem(err, err_size, "%s: not an unencrypted PEM private key", path);
    ERR_clear_error();
    return k;
}

char *cm_certs_subject_text(const X509 *cert, int nid)
{
    const X509_NAME *name = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(name, nid, -1);
    if (idx < 0)
        return NULL;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (n < 0)
        return NULL;
    char *s = NULL;
    if (memchr(utf8, '\0', (size_t)n) == NULL) /* an embedded NUL would make comparisons lie */
        s = xstrdup((const char *)utf8);
    OPENSSL_free(utf8);
    return s;
}

static int asn1_to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

static void identity_dispose(cm_pass_identity_t *id)
{
    free((char *)id->pass_type_id);
    free((char *)id->team_id);
    free((char *)id->cert_path);
    free((char *)id->key_path);
    X509_free(id->cert);
    EVP_PKEY_free(id->key); /* OpenSSL clears the key material of RSA/EC keys as it frees them */
    memset(id, 0, sizeof(*id));
}

/* Loads the pass type in dir/name into *id. Returns 0, or -1 after adding the problems to err. */
static int load_identity(const char *dir, const char *name, cm_pass_identity_t *id, char *err,
                         size_t err_size)
{
    int rc = -1;
    char *folder = path_join(dir, name);
    char *uid = NULL;
    memset(id, 0, sizeof(*id));
    id->pass_type_id = xstrdup(name);
    id->cert_path = path_join(folder, "certificate.pem");
    id->key_path = path_join(folder, "private-key.pem");
    id->cert = read_cert(id->cert_path, err, err_size);
    id->key = read_key(id->key_path, err, err_size);
    if (id->cert == NULL || id->key == NULL)
        goto out;
    int bad = 0;
    if (X509_check_private_key(id->cert, id->key) != 1) {
        add_problem(err, err_size, "%s does not match the certificate %s", id->key_path, id->cert_path);
        bad = 1;
    }
    ERR_clear_error();
    uid = cm_certs_subject_text(id->cert, NID_userId);
    if (uid == NULL) {
        add_problem(err, err_size, "%s: the subject has no UID (the pass type identifier)", id->cert_path);
        bad = 1;
    } else if (strcmp(uid, name) != 0) {
        add_problem(err, err_size, "%s: the subject UID '%s' differs from the folder name '%s'",
                    id->cert_path, uid, name);
        bad = 1;
    }
    id->team_id = cm_certs_subject_text(id->cert, NID_organizationalUnitName);
    if (id->team_id == NULL || id->team_id[0] == '\0') {
        add_problem(err, err_size, "%s: the subject has no OU (the Team ID)", id->cert_path);
        bad = 1;
    }
    if (asn1_to_time(X509_get0_notBefore(id->cert), &id->not_before) != 0 ||
        asn1_to_time(X509_get0_notAfter(id->cert), &id->not_after) != 0) {
        add_problem(err, err_size, "%s: unreadable validity dates", id->cert_path);
        bad = 1;
    }
    /* Computes the cached extension data now, while one thread owns the certificate, instead of on first
     * use from several signing threads. */
    X509_check_purpose(id->cert, -1, 0);
    if (bad)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        identity_dispose(id);
    free(uid);
    free(folder);
    return rc;
}

static int is_directory(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    struct stat st;
    int r = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return r;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Frees the names list_pass_types gave. */
static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* The names of the pass type folders of dir, sorted, malloc'd. Returns 0, or -1 after adding to err. */
static int list_pass_types(const char *dir, char ***out, size_t *out_count, char *err, size_t err_size)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        add_problem(err, err_size, "%s: cannot open the certificates folder: %s", dir, strerror(errno));
        return -1;
    }
    char **names = calloc(MAX_PASS_TYPES, sizeof(*names));
    if (names == NULL)
        abort();
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "pass.", 5) != 0 || !is_directory(dir, e->d_name))
            continue;
        if (n == MAX_PASS_TYPES) {
            add_problem(err, err_size, "%s: more than %d pass type folders", dir, MAX_PASS_TYPES);
            rc = -1;
            break;
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    *out = names;
    *out_count = n;
    return rc;
}

int cm_certs_load(const char *dir, int require_wwdr, cm_certs_t **out, char *err, size_t err_size)
{
    int rc = -1;
    char **names = NULL;
    size_t name_count = 0;
    char *wwdr_path = path_join(dir, "wwdr.pem");
    cm_certs_t *certs = calloc(1, sizeof(*certs));
    if (certs == NULL)
        abort();
    if (err_size == 0)
        abort();
    err[0] = '\0';

    int bad = 0;
    struct stat st;
    if (require_wwdr || stat(wwdr_path, &st) == 0) {
        certs->wwdr = read_cert(wwdr_path, err, err_size);
        if (certs->wwdr == NULL)
            bad = 1;
        else {
            X509_check_purpose(certs->wwdr, -1, 0);
            certs->wwdr_source = xstrdup(wwdr_path);
        }
    }
    if (list_pass_types(dir, &names, &name_count, err, err_size) != 0)
        bad = 1;
    else if (name_count == 0) {
        add_problem(err, err_size, "%s: no pass type folder (expected pass.<identifier>/certificate.pem)",
                    dir);
        bad = 1;
    }
    certs->cap = name_count > 0 ? name_count : 1;
    certs->ids = calloc(certs->cap, sizeof(*certs->ids));
    if (certs->ids == NULL)
        abort();
    for (size_t i = 0; i < name_count; i++) {
        if (load_identity(dir, names[i], &certs->ids[certs->count], err, err_size) == 0)
            certs->count++;
        else
            bad = 1;
    }
    if (bad)
        goto out;
    *out = certs;
    certs = NULL;
    rc = 0;
out:
    cm_certs_free(certs);
    free_names(names, name_count);
    free(wwdr_path);
    return rc;
}

const cm_pass_identity_t *cm_certs_find(const cm_certs_t *certs, const char *pass_type_id)
{
    for (size_t i = 0; i < certs->count; i++)
        if (strcmp(certs->ids[i].pass_type_id, pass_type_id) == 0)
            return &certs->ids[i];
    return NULL;
}

size_t cm_certs_count(const cm_certs_t *certs)
{
    return certs->count;
}

const cm_pass_identity_t *cm_certs_at(const cm_certs_t *certs, size_t index)
{
    return index < certs->count ? &certs->ids[index] : NULL;
}

struct x509_st *cm_certs_wwdr(const cm_certs_t *certs)
{
    return certs->wwdr;
}

void cm_certs_free(cm_certs_t *certs)
{
    if (certs == NULL)
        return;
    for (size_t i = 0; i < certs->count; i++)
        identity_dispose(&certs->ids[i]);
    free(certs->ids);
    X509_free(certs->wwdr);
    free(certs->wwdr_source);
    free(certs);
}

const char *cm_certs_wwdr_source(const cm_certs_t *certs)
{
    return certs->wwdr_source != NULL ? certs->wwdr_source : "";
}

/* ---- the checked loader ---- */

/* A name as one line (RFC 2253, as `openssl x509 -nameopt RFC2253` prints it), into out. */
static void name_text(const X509_NAME *name, char *out, size_t size)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        abort();
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0)
            snprintf(out, size, "%.*s", (int)(n < (long)size ? n : (long)size - 1), p);
    }
    BIO_free(b);
}

/* A Unix time as an ISO 8601 UTC date, "2030-12-10T00:00:00Z". */
static void iso_date(time_t t, char out[32])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)t);
}

/* Adds the date problem of a certificate valid from not_before to not_after, judged at now. 1 when
 * there was one. */
static int check_dates(const char *what, time_t not_before, time_t not_after, time_t now, char *err,
                       size_t err_size)
{
    if (now == 0 || (now >= not_before && now <= not_after))
        return 0;
    char from[32], to[32];
    iso_date(not_before, from);
    iso_date(not_after, to);
    add_problem(err, err_size, "%s: %s (notBefore %s, notAfter %s)", what,
                now > not_after ? "expired" : "not valid yet", from, to);
    return 1;
}

int cm_certs_check_identity(const cm_pass_identity_t *id, struct x509_st *wwdr, const char *wwdr_source,
                            time_t now, char *err, size_t err_size)
{
    int bad = 0;
    char issuer[512], wwdr_name[512];
    if (err_size == 0)
        abort();
    err[0] = '\0';
    if (wwdr == NULL) {
        add_problem(err, err_size, "%s: no WWDR intermediate to check its issuer against", id->cert_path);
        bad = 1;
    } else {
        name_text(X509_get_issuer_name(id->cert), issuer, sizeof(issuer));
        name_text(X509_get_subject_name(wwdr), wwdr_name, sizeof(wwdr_name));
        if (X509_NAME_cmp(X509_get_issuer_name(id->cert), X509_get_subject_name(wwdr)) != 0) {
            add_problem(err, err_size, "%s: issued by '%s', not by the configured WWDR '%s' (%s)",
                        id->cert_path, issuer, wwdr_name, wwdr_source);
            bad = 1;
        } else {
            EVP_PKEY *pub = X509_get0_pubkey(wwdr);
            if (X509_check_issued(wwdr, id->cert) != X509_V_OK || pub == NULL ||
                X509_verify(id->cert, pub) != 1) {
                add_problem(
                    err, err_size,
                    "%s: names the configured WWDR '%s' (%s) as its issuer but is not signed by its key",
                    id->cert_path, wwdr_name, wwdr_source);
                bad = 1;
            }
            ERR_clear_error();
        }
    }
    bad |= check_dates(id->cert_path, id->not_before, id->not_after, now, err, err_size);
    return bad ? -1 : 0;
}

static X509 *read_builtin_wwdr(void)
{
    BIO *b = BIO_new_mem_buf(cm_certs_apple_wwdr_g4_pem, -1);
    if (b == NULL)
        abort();
    X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (x == NULL) /* compiled in from the source tree: a broken copy is a build defect */
        abort();
    return x;
}

/* The WWDR chosen by opt (see cm_certs_options_t) into certs. 0, or -1 after adding to err. */
static int load_wwdr(cm_certs_t *certs, const char *dir, const cm_certs_options_t *opt, char *err,
                     size_t err_size)
{
    struct stat st;
    char *path = NULL;
    if (opt->wwdr_path != NULL && opt->wwdr_path[0] != '\0')
        path = xstrdup(opt->wwdr_path);
    else {
        path = path_join(dir, "wwdr.pem");
        if (stat(path, &st) != 0) {
            free(path);
            path = NULL;
        }
    }
    if (path == NULL) {
        certs->wwdr = read_builtin_wwdr();
        certs->wwdr_source = xstrdup(CM_CERTS_BUILTIN_WWDR);
    } else {
        certs->wwdr = read_cert(path, err, err_size);
        certs->wwdr_source = path;
        if (certs->wwdr == NULL)
            return -1;
    }
    X509_check_purpose(certs->wwdr, -1, 0);
    time_t nb, na;
    if (asn1_to_time(X509_get0_notBefore(certs->wwdr), &nb) != 0 ||
        asn1_to_time(X509_get0_notAfter(certs->wwdr), &na) != 0) {
        add_problem(err, err_size, "%s: unreadable validity dates", certs->wwdr_source);
        return -1;
    }
    char what[600];
    snprintf(what, sizeof(what), "the WWDR intermediate (%s)", certs->wwdr_source);
    return check_dates(what, nb, na, opt->now, err, err_size) ? -1 : 0;
}

int cm_certs_load_checked(const char *dir, const cm_certs_options_t *opt, cm_certs_refused_fn refused,
                          void *data, cm_certs_t **out, char *err, size_t err_size)
{
    int rc = -1;
    char **names = NULL;
    size_t name_count = 0;
    char problems[2048];
    if (err_size == 0)
        abort();
    err[0] = '\0';
    cm_certs_t *certs = calloc(1, sizeof(*certs));
    if (certs == NULL)
        abort();
    if (load_wwdr(certs, dir, opt, err, err_size) != 0)
        goto out;
    if (list_pass_types(dir, &names, &name_count, err, err_size) != 0)
        goto out;
    certs->cap = name_count > 0 ? name_count : 1;
    certs->ids = calloc(certs->cap, sizeof(*certs->ids));
    if (certs->ids == NULL)
        abort();
    for (size_t i = 0; i < name_count; i++) {
        cm_pass_identity_t *id = &certs->ids[certs->count];
        problems[0] = '\0';
        if (!cm_id_is_pass_type(names[i], strlen(names[i]))) {
            if (refused != NULL)
                refused(data, names[i], "the folder name is not a valid pass type identifier");
            continue;
        }
        if (load_identity(dir, names[i], id, problems, sizeof(problems)) != 0) {
            if (refused != NULL)
                refused(data, names[i], problems);
            continue;
        }
        if (cm_certs_check_identity(id, certs->wwdr, certs->wwdr_source, opt->now, problems,
                                    sizeof(problems)) != 0) {
            identity_dispose(id);
            if (refused != NULL)
                refused(data, names[i], problems);
            continue;
        }
        certs->count++;
    }
    *out = certs;
    certs = NULL;
    rc = 0;
out:
    cm_certs_free(certs);
    free_names(names, name_count);
    return rc;
}

int cm_certs_add(cm_certs_t *certs, const cm_pass_identity_t *id)
{
    if (cm_certs_find(certs, id->pass_type_id) != NULL || certs->count >= MAX_PASS_TYPES)
        return -1;
    if (certs->count == certs->cap) {
        size_t cap = certs->cap > 0 ? certs->cap * 2 : 4;
        cm_pass_identity_t *ids = realloc(certs->ids, cap * sizeof(*ids));
        if (ids == NULL)
            abort();
        certs->ids = ids;
        certs->cap = cap;
    }
    size_t at = 0;
    while (at < certs->count && strcmp(certs->ids[at].pass_type_id, id->pass_type_id) < 0)
        at++;
    memmove(&certs->ids[at + 1], &certs->ids[at], (certs->count - at) * sizeof(*certs->ids));
    cm_pass_identity_t *copy = &certs->ids[at];
    *copy = *id;
    copy->pass_type_id = xstrdup(id->pass_type_id);
    copy->team_id = xstrdup(id->team_id);
    copy->cert_path = xstrdup(id->cert_path);
    copy->key_path = xstrdup(id->key_path);
    if (X509_up_ref(id->cert) != 1 || EVP_PKEY_up_ref(id->key) != 1)
        abort();
    certs->count++;
    return 0;
}
