/*
 * The .pkpass reader; see common/pkpass_reader.h.
 *
 * One pass over the archive reads every entry into memory (after the caps were checked on the declared
 * sizes, so a zip bomb is refused before anything is inflated); every later check works on those
 * bytes. Each check appends its findings to the JSON report as it goes and raises one flag per verdict;
 * the verdict is chosen from the flags at the end, so that no check hides another's problems.
 *
 * The signature is checked in three independent steps so that each failure gets its own verdict:
 * CMS_verify with CMS_NO_SIGNER_CERT_VERIFY (does the signature match manifest.json?), then whether
 * the embedded certificates hold the signer's issuer, then X509_verify_cert against the trust store
 * with the embedded certificates as untrusted helpers and no purpose (openssl cms -purpose any).
 */
#include "common/pkpass_reader.h"
#include "common/bundle_zip.h"
#include "common/certs.h"
#include "common/pkpass_strings.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zip.h>

enum flag { F_MALFORMED, F_UNSIGNED, F_TAMPERED, F_WRONG_INTERMEDIATE, F_UNTRUSTED, F_COUNT };

struct entry {
    cm_file_t file;     /* name and bytes (none for folders) */
    zip_uint64_t index; /* in the archive */
    zip_uint64_t compressed;
    int method; /* ZIP_CM_* */
    int is_folder, listed;
};

struct cm_pkpass_report {
    cm_pkpass_verdict_t verdict;
    int flags[F_COUNT];
    json_t *json;
    json_t *problems, *warnings; /* borrowed from json */
    struct entry *entries;
    size_t count;
};

static const char *const verdict_names[] = {"valid",           "unsigned", "tampered", "wrong_intermediate",
                                            "untrusted_chain", "malformed"};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n != 0 ? n : 1, size);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

/* A JSON string of s; bytes that are not printable ASCII become '?' when s is not valid UTF-8 (entry
 * names and certificate fields are untrusted bytes). NULL gives JSON null. */
static json_t *jstr(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    char *copy = xstrdup(s);
    for (char *c = copy; *c; c++)
        if (*c < ' ' || *c > '~')
            *c = '?';
    v = json_string(copy);
    free(copy);
    if (v == NULL)
        abort();
    return v;
}

static void set(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0)
        abort();
}

static void append(json_t *arr, json_t *value)
{
    if (value == NULL || json_array_append_new(arr, value) != 0)
        abort();
}

__attribute__((format(printf, 3, 4))) static void add_problem(cm_pkpass_report_t *r, enum flag f,
                                                              const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->flags[f] = 1;
    append(r->problems, jstr(msg));
}

__attribute__((format(printf, 2, 3))) static void add_warning(cm_pkpass_report_t *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    append(r->warnings, jstr(msg));
}

/* name with everything but printable ASCII replaced by '?', for messages. */
static const char *printable(const char *name, char *out, size_t size)
{
    size_t n = 0;
    for (; name[n] != '\0' && n + 1 < size; n++)
        out[n] = name[n] >= ' ' && name[n] <= '~' ? name[n] : '?';
    out[n] = '\0';
    return out;
}

static struct entry *find(const cm_pkpass_report_t *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (!r->entries[i].is_folder && strcmp(r->entries[i].file.name, name) == 0)
            return &r->entries[i];
    return NULL;
}

static int is_ignorable(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base != NULL ? base + 1 : name;
    return strncmp(name, "__MACOSX/", 9) == 0 || strcmp(base, ".DS_Store") == 0;
}

/* Everything the OpenSSL error queue holds, "; "-separated, then the queue is cleared. */
static void openssl_errors(char *out, size_t size)
{
    size_t used = 0;
    unsigned long e;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *reason = ERR_reason_error_string(e);
        char code[32];
        if (reason == NULL) {
            snprintf(code, sizeof(code), "error %lx", e);
            reason = code;
        }
        int n = snprintf(out + used, size - used, "%s%s", used > 0 ? "; " : "", reason);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(out, size, "unknown OpenSSL error");
    ERR_clear_error();
}

/* ---- the archive -------------------------------------------------------------------------------- */

static void check_names(cm_pkpass_report_t *r)
{
    char a[256], b[256];
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *x = &r->entries[i];
        size_t xl = strlen(x->file.name);
        for (size_t j = i + 1; j < r->count; j++) {
            const struct entry *y = &r->entries[j];
            /* Exact repeats never get here: libzip refuses to open such an archive (ZIP_ER_EXISTS). */
            if (strcasecmp(x->file.name, y->file.name) == 0 && x->is_folder == y->is_folder)
                add_problem(r, F_MALFORMED, "the entries \"%s\" and \"%s\" differ only in case",
                            printable(x->file.name, a, sizeof(a)), printable(y->file.name, b, sizeof(b)));
        }
        if (x->is_folder)
            continue;
        for (size_t j = 0; j < r->count; j++) {
            const char *y = r->entries[j].file.name;
            if (j != i && strncmp(y, x->file.name, xl) == 0 && y[xl] == '/') {
                add_problem(r, F_MALFORMED, "\"%s\" is both a file and a folder",
                            printable(x->file.name, a, sizeof(a)));
                break;
            }
        }
    }
}

static void read_archive(cm_pkpass_report_t *r, const void *data, size_t len, size_t max_entries,
                         size_t max_bytes)
{
    zip_error_t ze;
    zip_t *za = NULL;
    zip_file_t *zf = NULL;
    char shown[256];
    zip_error_init(&ze);
    zip_source_t *src = len > 0 ? zip_source_buffer_create(data, len, 0, &ze) : NULL;
    /* A failed zip_open_from_source leaves the source to us, so it can be opened a second time. */
    if (src != NULL && (za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze)) == NULL &&
        zip_error_code_zip(&ze) == ZIP_ER_INCONS) {
        /* Archives Wallet accepts (kinotickets-cinema.pkpass, signed by a real issuer) fail libzip's
         * strict consistency check; read them, and say so. */
        add_warning(r, "the archive's headers are not fully consistent (%s)", zip_error_strerror(&ze));
        zip_error_fini(&ze);
        zip_error_init(&ze);
        za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    }
    if (za == NULL && zip_error_code_zip(&ze) == ZIP_ER_EXISTS) {
        add_problem(r, F_MALFORMED,
                    "an entry name appears twice in the archive"); /* libzip refuses to open it */
        zip_source_free(src);
        goto out;
    }
    if (za == NULL) {
        add_problem(r, F_MALFORMED, "not a ZIP archive (%s)",
                    len == 0 ? "no bytes" : zip_error_strerror(&ze));
        zip_source_free(src);
        goto out;
    }
    zip_int64_t n = zip_get_num_entries(za, 0);
    if (n < 0 || (zip_uint64_t)n > max_entries) {
        add_problem(r, F_MALFORMED, "the archive has %lld entries, more than the %zu allowed", (long long)n,
                    max_entries);
        goto out;
    }
    r->entries = xcalloc((size_t)n, sizeof(*r->entries));
    size_t total = 0;
    int too_big = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        zip_stat_t st;
        if (zip_stat_index(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
            !(st.valid & ZIP_STAT_SIZE)) {
            add_problem(r, F_MALFORMED, "entry %lld of the archive cannot be read (%s)", (long long)i,
                        zip_strerror(za));
            continue;
        }
        size_t nl = strlen(st.name);
        int is_folder = nl > 0 && st.name[nl - 1] == '/';
        char *name = xstrdup(st.name);
        if (is_folder)
            name[nl - 1] = '\0';
        if (!cm_bundle_name_is_safe(name)) {
            add_problem(
                r, F_MALFORMED,
                "the entry name \"%s\" is unsafe (printable ASCII without spaces or '\\', relative, no "
                "empty, \".\" or \"..\" part)",
                printable(st.name, shown, sizeof(shown)));
            free(name);
            continue;
        }
        if (is_folder)
            name[nl - 1] = '/';
        if (st.size > max_bytes - total) {
            too_big = 1;
            total = max_bytes;
        } else {
            total += st.size;
        }
        struct entry *e = &r->entries[r->count++];
        e->file.name = name;
        e->file.len = st.size;
        e->index = (zip_uint64_t)i;
        e->is_folder = is_folder;
        e->compressed = st.valid & ZIP_STAT_COMP_SIZE ? st.comp_size : 0;
        e->method = st.valid & ZIP_STAT_COMP_METHOD ? st.comp_method : -1;
    }
    if (too_big)
        add_problem(r, F_MALFORMED, "the archive holds more than %zu bytes once decompressed", max_bytes);
    check_names(r);
    if (r->flags[F_MALFORMED])
        goto out; /* nothing is decompressed from an archive already refused */
    for (size_t k = 0; k < r->count; k++) {
        struct entry *e = &r->entries[k];
        if (e->is_folder)
            continue;
        unsigned char *buf = malloc(e->file.len + 1);
        if (buf == NULL)
            abort();
        e->file.data = buf;
        zf = zip_fopen_index(za, e->index, 0);
        if (zf == NULL) {
            add_problem(r, F_MALFORMED, "%s cannot be read from the archive (%s)", e->file.name,
                        zip_strerror(za));
            continue;
        }
        zip_int64_t got = e->file.len > 0 ? zip_fread(zf, buf, e->file.len) : 0;
        char extra;
        /* Reading past the end makes libzip compare the CRC-32 and the size with the header's. */
        if (got < 0 || (zip_uint64_t)got != e->file.len || zip_fread(zf, &extra, 1) != 0)
            add_problem(r, F_MALFORMED, "%s is damaged in the archive (%s)", e->file.name,
                        zip_error_strerror(zip_file_get_error(zf)));
        zip_fclose(zf);
        zf = NULL;
    }
out:
    if (za != NULL)
        zip_discard(za);
    zip_error_fini(&ze);
}

/* ---- pass.json and pass.strings -------------------------------------------------------------------- */

static json_t *check_pass_json(cm_pkpass_report_t *r)
{
    static const char *const styles[] = {"boardingPass", "coupon", "eventTicket", "generic", "storeCard"};
    const struct entry *e = find(r, "pass.json");
    json_t *info = json_object();
    if (info == NULL)
        abort();
    set(r->json, "passJson", info);
    if (e == NULL) {
        add_problem(r, F_MALFORMED, "the archive has no pass.json");
        set(info, "present", json_false());
        return NULL;
    }
    set(info, "present", json_true());
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)e->file.data, e->file.len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        const char *why = doc == NULL ? jerr.text : "not a JSON object";
        set(info, "valid", json_false());
        set(info, "error", jstr(why));
        if (doc == NULL) {
            set(info, "line", json_integer(jerr.line));
            set(info, "column", json_integer(jerr.column));
            /* jansson reports a trailing comma as a missing string before the closing bracket. */
            int comma = strstr(jerr.text, "expected near '}'") != NULL ||
                        strstr(jerr.text, "expected near ']'") != NULL;
            add_warning(r, "pass.json is not strict JSON: %s at line %d, column %d%s", jerr.text, jerr.line,
                        jerr.column, comma ? " (a trailing comma before it?)" : "");
        } else {
            add_warning(r, "pass.json is not a JSON object");
        }
        json_decref(doc);
        return NULL;
    }
    set(info, "valid", json_true());
    const char *keys[] = {"formatVersion", "passTypeIdentifier", "serialNumber", "teamIdentifier"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(doc, keys[i]);
        set(info, keys[i], v != NULL ? json_incref(v) : json_null());
    }
    json_t *found = json_array();
    for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++)
        if (json_object_get(doc, styles[i]) != NULL)
            append(found, json_string(styles[i]));
    set(info, "styles", found);
    return doc;
}

/* Wallet refuses a pass without an icon; it may be localized (en.lproj/icon.png). */
static void check_icon(cm_pkpass_report_t *r)
{
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *e = &r->entries[i];
        const char *slash = strchr(e->file.name, '/');
        const char *base = slash != NULL ? slash + 1 : e->file.name;
        if (e->is_folder || (slash != NULL && strchr(base, '/') != NULL))
            continue;
        if (strcmp(base, "icon.png") == 0 || strcmp(base, "icon@2x.png") == 0 ||
            strcmp(base, "icon@3x.png") == 0)
            return;
    }
    add_warning(
        r, "no icon.png (nor @2x, @3x), at the top or in a .lproj folder: Wallet refuses a pass without one");
}

static void check_strings(cm_pkpass_report_t *r)
{
    json_t *all = json_object();
    if (all == NULL)
        abort();
    set(r->json, "strings", all);
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *e = &r->entries[i];
        const char *base = strrchr(e->file.name, '/');
        base = base != NULL ? base + 1 : e->file.name;
        if (e->is_folder || strcmp(base, "pass.strings") != 0 || is_ignorable(e->file.name))
            continue;
        json_t *parsed = NULL, *info = json_object();
        const char *encoding = NULL;
        char err[256];
        if (info == NULL)
            abort();
        if (cm_pkpass_strings_parse(e->file.data, e->file.len, &parsed, &encoding, err, sizeof(err)) == 0) {
            set(info, "encoding", json_string(encoding));
            set(info, "entries", parsed);
        } else {
            set(info, "error", jstr(err));
            add_warning(r, "%s cannot be read: %s", e->file.name, err);
        }
        set(all, e->file.name, info);
    }
}

/* ---- manifest.json --------------------------------------------------------------------------------- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

static void digest_hex(const cm_file_t *f, const EVP_MD *md, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (EVP_Digest(f->data, f->len, d, &dl, md, NULL) != 1)
        abort();
    for (unsigned int i = 0; i < dl; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 0x0f];
    }
    hex[2 * dl] = '\0';
}

static void check_manifest(cm_pkpass_report_t *r, int is_signed)
{
    const struct entry *m = find(r, CM_MANIFEST_NAME);
    if (m == NULL) {
        set(r->json, "manifest", json_null());
        if (is_signed)
            add_problem(r, F_TAMPERED, "the archive has a signature but no manifest.json");
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)m->file.data, m->file.len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        if (doc == NULL)
            add_problem(r, F_MALFORMED, "manifest.json is not valid JSON: %s at line %d, column %d",
                        jerr.text, jerr.line, jerr.column);
        else
            add_problem(r, F_MALFORMED, "manifest.json is not a JSON object");
        json_decref(doc);
        set(r->json, "manifest", json_null());
        return;
    }
    json_t *info = json_object(), *mismatched = json_array(), *missing = json_array(),
           *unlisted = json_array(), *reserved = json_array();
    if (info == NULL || mismatched == NULL || missing == NULL || unlisted == NULL || reserved == NULL)
        abort();
    int sha1 = 0, sha256 = 0;
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        struct entry *f = find(r, key);
        if (cm_manifest_is_reserved(key)) {
            append(reserved, json_string(key));
            add_problem(r, F_TAMPERED, "the manifest lists %s, which must not be listed", key);
            continue;
        }
        const char *hex = json_string_value(value);
        size_t hl = hex != NULL ? json_string_length(value) : 0;
        if (f != NULL)
            f->listed = 1;
        if (hex == NULL || (hl != 40 && hl != 64) || !is_hex(hex, hl)) {
            append(mismatched, json_string(key));
            add_problem(r, F_TAMPERED, "the manifest entry of %s is not a SHA-1 or SHA-256 hex digest", key);
            continue;
        }
        if (hl == 40)
            sha1++;
        else
            sha256++;
        if (f == NULL) {
            append(missing, json_string(key));
            add_problem(r, F_TAMPERED, "%s is listed in the manifest but missing from the archive", key);
            continue;
        }
        char actual[2 * EVP_MAX_MD_SIZE + 1];
        digest_hex(&f->file, hl == 40 ? EVP_sha1() : EVP_sha256(), actual);
        if (strcasecmp(actual, hex) != 0) {
            append(mismatched, json_string(key));
            add_problem(r, F_TAMPERED, "%s does not match its manifest entry", key);
        }
    }
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *e = &r->entries[i];
        if (e->is_folder || e->listed || cm_manifest_is_reserved(e->file.name) || is_ignorable(e->file.name))
            continue;
        append(unlisted, json_string(e->file.name));
        add_problem(r, F_TAMPERED, "%s is in the archive but not in the manifest", e->file.name);
    }
    set(info, "digest",
        sha1 > 0 && sha256 > 0 ? json_string("mixed")
        : sha1 > 0             ? json_string("sha1")
        : sha256 > 0           ? json_string("sha256")
                               : json_null());
    set(info, "entries", json_integer((json_int_t)json_object_size(doc)));
    set(info, "mismatched", mismatched);
    set(info, "missing", missing);
    set(info, "unlisted", unlisted);
    set(info, "listsReserved", reserved);
    set(r->json, "manifest", info);
    json_decref(doc);
}

/* ---- certificates ---------------------------------------------------------------------------------- */

static json_t *time_json(const ASN1_TIME *t)
{
    struct tm tm;
    char s[32];
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(s);
}

static json_t *name_json(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        abort();
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (s == NULL)
        abort();
    if (n > 0)
        memcpy(s, p, (size_t)n);
    s[n > 0 ? n : 0] = '\0';
    BIO_free(b);
    json_t *v = jstr(s);
    free(s);
    return v;
}

static char *serial_hex(const X509 *cert)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    char *s = xstrdup(hex != NULL ? hex : "");
    OPENSSL_free(hex);
    return s;
}

int cm_pkpass_wwdr_generation(const X509 *cert, char *out, size_t out_size)
{
    char *cn = cm_certs_subject_text(cert, NID_commonName), *ou = NULL, *serial = NULL;
    int rc = -1;
    if (cn == NULL || strstr(cn, "Worldwide Developer Relations Certification Authority") == NULL)
        goto out;
    ou = cm_certs_subject_text(cert, NID_organizationalUnitName);
    serial = serial_hex(cert);
    const char *gen = "G1";
    if (ou != NULL && ou[0] == 'G' && ou[1] != '\0' && strspn(ou + 1, "0123456789") == strlen(ou + 1))
        gen = ou;
    else if (strcmp(serial, "19") == 0)
        gen = "2008";
    else if (strcmp(serial, "01DEBCC4396DA010") == 0)
        gen = "2013";
    snprintf(out, out_size, "%s", gen);
    rc = 0;
out:
    free(cn);
    free(ou);
    free(serial);
    return rc;
}

/* How a certificate is named in messages: "WWDR G4" for a WWDR intermediate, else its subject CN. */
static void short_name(const X509 *cert, char *out, size_t size)
{
    char gen[16];
    if (cm_pkpass_wwdr_generation(cert, gen, sizeof(gen)) == 0) {
        snprintf(out, size, "WWDR %s", gen);
        return;
    }
    char *cn = cm_certs_subject_text(cert, NID_commonName);
    char shown[128];
    snprintf(out, size, "%s", cn != NULL ? printable(cn, shown, sizeof(shown)) : "(no CN)");
    free(cn);
}

static json_t *cert_json(const X509 *cert)
{
    char gen[16], *serial = serial_hex(cert);
    json_t *c = json_object();
    if (c == NULL)
        abort();
    set(c, "subject", name_json(X509_get_subject_name(cert)));
    set(c, "issuer", name_json(X509_get_issuer_name(cert)));
    set(c, "serialNumber", json_string(serial));
    set(c, "notBefore", time_json(X509_get0_notBefore(cert)));
    set(c, "notAfter", time_json(X509_get0_notAfter(cert)));
    set(c, "wwdr", cm_pkpass_wwdr_generation(cert, gen, sizeof(gen)) == 0 ? json_string(gen) : json_null());
    free(serial);
    return c;
}

static json_t *signer_json(X509 *cert)
{
    json_t *s = cert_json(cert);
    const int nids[] = {NID_userId, NID_organizationalUnitName, NID_commonName, NID_organizationName};
    const char *keys[] = {"uid", "teamIdentifier", "commonName", "organization"};
    for (size_t i = 0; i < 4; i++) {
        char *v = cm_certs_subject_text(cert, nids[i]);
        set(s, keys[i], jstr(v));
        free(v);
    }
    return s;
}

/* ---- signature ------------------------------------------------------------------------------------- */

static void check_identity(cm_pkpass_report_t *r, X509 *signer, const json_t *pass_doc)
{
    if (pass_doc == NULL)
        return;
    const int nids[] = {NID_userId, NID_organizationalUnitName};
    const char *keys[] = {"passTypeIdentifier", "teamIdentifier"}, *fields[] = {"UID", "OU"};
    for (size_t i = 0; i < 2; i++) {
        char *cert_value = cm_certs_subject_text(signer, nids[i]);
        const char *doc_value = json_string_value(json_object_get(pass_doc, keys[i]));
        if (cert_value == NULL || doc_value == NULL || strcmp(cert_value, doc_value) != 0)
            add_warning(
                r, "pass.json %s \"%s\" differs from the signer certificate's %s \"%s\" (Wallet refuses it)",
                keys[i], doc_value != NULL ? doc_value : "(none)", fields[i],
                cert_value != NULL ? cert_value : "(none)");
        free(cert_value);
    }
}

static void check_expiry(cm_pkpass_report_t *r, X509 *signer, const cm_pkpass_options_t *opts)
{
    if (!opts->ignore_expiry && opts->at_time == 0)
        return;
    if (X509_cmp_current_time(X509_get0_notAfter(signer)) < 0) {
        struct tm tm;
        char when[32] = "?";
        if (ASN1_TIME_to_tm(X509_get0_notAfter(signer), &tm) == 1)
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        add_warning(r, "the signer certificate expired on %s (%s)", when,
                    opts->ignore_expiry ? "expiry ignored" : "validity checked at the given time");
    }
}

static void check_chain(cm_pkpass_report_t *r, json_t *sig, X509 *signer, STACK_OF(X509) * certs,
                        const cm_pkpass_options_t *opts)
{
    json_t *chain = json_object();
    if (chain == NULL)
        abort();
    set(sig, "chain", chain);
    set(chain, "ignoreExpiry", json_boolean(opts->ignore_expiry));
    if (opts->trust == NULL) {
        set(chain, "verified", json_false());
        set(chain, "error", json_string("no trust store given"));
        add_problem(r, F_UNTRUSTED, "no trust store was given: the certificate chain was not checked");
        return;
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, opts->trust, signer, certs) != 1)
        abort();
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (opts->ignore_expiry)
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
    if (opts->at_time != 0)
        X509_VERIFY_PARAM_set_time(param, opts->at_time);
    int ok = X509_verify_cert(ctx) == 1;
    set(chain, "verified", json_boolean(ok));
    if (ok) {
        json_t *path = json_array();
        STACK_OF(X509) *built = X509_STORE_CTX_get0_chain(ctx);
        for (int i = 0; i < sk_X509_num(built); i++) {
            char name[160];
            short_name(sk_X509_value(built, i), name, sizeof(name));
            append(path, jstr(name));
        }
        set(chain, "path", path);
        set(chain, "error", json_null());
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        const char *why = X509_verify_cert_error_string(e);
        set(chain, "error", jstr(why));
        add_problem(r, F_UNTRUSTED, "the signer certificate's chain does not verify: %s (at depth %d)", why,
                    X509_STORE_CTX_get_error_depth(ctx));
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
}

/* Whether the signature embeds the certificate that issued the signer's. */
static void check_intermediate(cm_pkpass_report_t *r, json_t *sig, X509 *signer, STACK_OF(X509) * certs)
{
    X509 *issuer = NULL;
    char others[256] = "", name[160];
    size_t used = 0;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (c == signer)
            continue;
        if (issuer == NULL && X509_check_issued(c, signer) == X509_V_OK)
            issuer = c;
        short_name(c, name, sizeof(name));
        int n = snprintf(others + used, sizeof(others) - used, "%s%s", used > 0 ? ", " : "", name);
        if (n > 0 && (size_t)n < sizeof(others) - used)
            used += (size_t)n;
    }
    set(sig, "issuerEmbedded", json_boolean(issuer != NULL));
    if (issuer != NULL || X509_check_issued(signer, signer) == X509_V_OK)
        return;
    const X509_NAME *in = X509_get_issuer_name(signer);
    int idx = X509_NAME_get_index_by_NID(in, NID_organizationalUnitName, -1);
    unsigned char *ou = NULL;
    if (idx >= 0 && ASN1_STRING_to_UTF8(&ou, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(in, idx))) < 0)
        ou = NULL;
    idx = X509_NAME_get_index_by_NID(in, NID_commonName, -1);
    unsigned char *cn = NULL;
    if (idx >= 0 && ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(in, idx))) < 0)
        cn = NULL;
    char wanted[256], shown[200];
    snprintf(wanted, sizeof(wanted), "%s%s%s",
             cn != NULL ? printable((char *)cn, shown, sizeof(shown)) : "(no CN)", ou != NULL ? ", OU=" : "",
             ou != NULL ? (char *)ou : "");
    if (used > 0)
        add_problem(
            r, F_WRONG_INTERMEDIATE,
            "wrong intermediate: the signer certificate was issued by %s, which the signature does not "
            "embed; it embeds %s",
            wanted, others);
    else
        add_problem(r, F_WRONG_INTERMEDIATE,
                    "the signature embeds no intermediate: it must hold the signer certificate's issuer %s",
                    wanted);
    OPENSSL_free(ou);
    OPENSSL_free(cn);
}

static void check_signature(cm_pkpass_report_t *r, const cm_pkpass_options_t *opts, const json_t *pass_doc)
{
    const struct entry *s = find(r, CM_SIGNATURE_NAME), *m = find(r, CM_MANIFEST_NAME);
    CMS_ContentInfo *cms = NULL;
    STACK_OF(X509) *certs = NULL;
    BIO *content = NULL;
    char why[512];
    if (s == NULL) {
        set(r->json, "signature", json_null());
        r->flags[F_UNSIGNED] = 1;
        return;
    }
    json_t *sig = json_object();
    if (sig == NULL)
        abort();
    set(r->json, "signature", sig);
    const unsigned char *p = s->file.data;
    if (s->file.len <= 0x7fffffff)
        cms = d2i_CMS_ContentInfo(NULL, &p, (long)s->file.len);
    if (cms == NULL || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        openssl_errors(why, sizeof(why));
        add_problem(r, F_MALFORMED, "the signature is not a DER CMS SignedData (%s)",
                    cms == NULL ? why : "another content type");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *infos = CMS_get0_SignerInfos(cms);
    set(sig, "signers", json_integer(sk_CMS_SignerInfo_num(infos)));
    if (sk_CMS_SignerInfo_num(infos) < 1) {
        add_problem(r, F_MALFORMED, "the signature has no signer");
        goto out;
    }
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(infos, 0);
    ASN1_OCTET_STRING *keyid = NULL;
    X509_NAME *issuer_name = NULL;
    ASN1_INTEGER *sno = NULL;
    if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer_name, &sno) == 1)
        set(sig, "signerIdentifier",
            json_string(keyid != NULL ? "subjectKeyIdentifier" : "issuerAndSerialNumber"));
    X509_ALGOR *dig = NULL, *salg = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &salg);
    const ASN1_OBJECT *obj = NULL;
    X509_ALGOR_get0(&obj, NULL, NULL, dig);
    char alg[64];
    OBJ_obj2txt(alg, sizeof(alg), obj, 0);
    for (char *c = alg; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    set(sig, "digest", jstr(alg));
    int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
    ASN1_TYPE *t = idx >= 0 ? X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, idx), 0) : NULL;
    if (t != NULL && (t->type == V_ASN1_UTCTIME || t->type == V_ASN1_GENERALIZEDTIME))
        set(sig, "signingTime", time_json((const ASN1_TIME *)t->value.asn1_string));
    else {
        set(sig, "signingTime", json_null());
        add_warning(r, "the signature has no signingTime attribute (Apple asks for one)");
    }

    certs = CMS_get1_certs(cms);
    if (certs == NULL && (certs = sk_X509_new_null()) == NULL)
        abort();
    X509 *signer = NULL;
    json_t *list = json_array();
    if (list == NULL)
        abort();
    set(sig, "certificates", list);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        json_t *cj = cert_json(c);
        int is_signer = signer == NULL && CMS_SignerInfo_cert_cmp(si, c) == 0;
        if (is_signer)
            signer = c;
        set(cj, "signer", json_boolean(is_signer));
        append(list, cj);
    }
    if (signer == NULL) {
        set(sig, "signer", json_null());
        add_problem(r, F_UNTRUSTED, "the signature does not hold its signer's certificate");
        goto out;
    }
    set(sig, "signer", signer_json(signer));

    if (m != NULL) {
        content = BIO_new_mem_buf(m->file.data, (int)m->file.len);
        if (content == NULL)
            abort();
        ERR_clear_error();
        int ok = CMS_verify(cms, NULL, NULL, content, NULL, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1;
        set(sig, "contentVerified", json_boolean(ok));
        if (!ok) {
            openssl_errors(why, sizeof(why));
            set(sig, "contentError", jstr(why));
            add_problem(r, F_TAMPERED, "the signature does not match manifest.json (%s)", why);
        }
    } else {
        set(sig, "contentVerified", json_false());
    }
    check_intermediate(r, sig, signer, certs);
    check_chain(r, sig, signer, certs, opts);
    check_expiry(r, signer, opts);
    check_identity(r, signer, pass_doc);
out:
    BIO_free(content);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
}

/* ---- the report ------------------------------------------------------------------------------------ */

static void list_entries(cm_pkpass_report_t *r)
{
    json_t *entries = json_array(), *ignored = json_array();
    if (entries == NULL || ignored == NULL)
        abort();
    for (size_t i = 0; i < r->count; i++) {
        const struct entry *e = &r->entries[i];
        int ignore = !e->is_folder && !e->listed && is_ignorable(e->file.name);
        const char *method = e->method == ZIP_CM_STORE     ? "store"
                             : e->method == ZIP_CM_DEFLATE ? "deflate"
                                                           : "other";
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:s}", "name", e->file.name, "kind",
                              e->is_folder ? "folder"
                              : ignore     ? "ignored"
                                           : "file",
                              "size", (json_int_t)e->file.len, "compressedSize", (json_int_t)e->compressed,
                              "compression", method);
        append(entries, o);
        if (ignore)
            append(ignored, json_string(e->file.name));
    }
    set(r->json, "entries", entries);
    set(r->json, "ignored", ignored);
}

int cm_pkpass_inspect(const void *data, size_t len, const cm_pkpass_options_t *opts, cm_pkpass_report_t **out)
{
    static const cm_pkpass_options_t defaults;
    if (data == NULL && len > 0)
        return -1;
    if (opts == NULL)
        opts = &defaults;
    cm_pkpass_report_t *r = xcalloc(1, sizeof(*r));
    r->json = json_object();
    r->problems = json_array();
    r->warnings = json_array();
    if (r->json == NULL || r->problems == NULL || r->warnings == NULL)
        abort();
    set(r->json, "verdict", json_null());
    set(r->json, "problems", r->problems);
    set(r->json, "warnings", r->warnings);
    /* The keys in reading order; the checks fill them in (jansson keeps a key's place when it is set). */
    const char *later[] = {"entries", "ignored", "manifest", "signature", "passJson", "strings"};
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++)
        set(r->json, later[i], json_null());
    read_archive(r, data, len, opts->max_entries != 0 ? opts->max_entries : CM_PKPASS_MAX_ENTRIES,
                 opts->max_bytes != 0 ? opts->max_bytes : CM_PKPASS_MAX_BYTES);
    if (!r->flags[F_MALFORMED]) {
        json_t *pass_doc = check_pass_json(r);
        check_icon(r);
        check_strings(r);
        check_manifest(r, find(r, CM_SIGNATURE_NAME) != NULL);
        check_signature(r, opts, pass_doc);
        json_decref(pass_doc);
    }
    list_entries(r);
    r->verdict = r->flags[F_MALFORMED]            ? CM_PKPASS_MALFORMED
                 : r->flags[F_UNSIGNED]           ? CM_PKPASS_UNSIGNED
                 : r->flags[F_TAMPERED]           ? CM_PKPASS_TAMPERED
                 : r->flags[F_WRONG_INTERMEDIATE] ? CM_PKPASS_WRONG_INTERMEDIATE
                 : r->flags[F_UNTRUSTED]          ? CM_PKPASS_UNTRUSTED_CHAIN
                                                  : CM_PKPASS_VALID;
    set(r->json, "verdict", json_string(verdict_names[r->verdict]));
    *out = r;
    return 0;
}

cm_pkpass_verdict_t cm_pkpass_report_verdict(const cm_pkpass_report_t *report)
{
    return report->verdict;
}

const char *cm_pkpass_verdict_name(cm_pkpass_verdict_t verdict)
{
    return (unsigned)verdict < sizeof(verdict_names) / sizeof(verdict_names[0]) ? verdict_names[verdict]
                                                                                : "?";
}

size_t cm_pkpass_report_problem_count(const cm_pkpass_report_t *report)
{
    return json_array_size(report->problems);
}

const char *cm_pkpass_report_problem(const cm_pkpass_report_t *report, size_t index)
{
    return json_string_value(json_array_get(report->problems, index));
}

json_t *cm_pkpass_report_json(const cm_pkpass_report_t *report)
{
    return report->json;
}

const cm_file_t *cm_pkpass_report_file(const cm_pkpass_report_t *report, const char *name)
{
    const struct entry *e = find(report, name);
    return e != NULL && e->file.data != NULL ? &e->file : NULL;
}

void cm_pkpass_report_free(cm_pkpass_report_t *report)
{
    if (report == NULL)
        return;
    for (size_t i = 0; i < report->count; i++) {
        free((char *)report->entries[i].file.name);
        free((unsigned char *)report->entries[i].file.data);
    }
    free(report->entries);
    json_decref(report->json);
    free(report);
}

int cm_pkpass_trust_load(const char *const *paths, size_t count, X509_STORE **out, char *err, size_t err_size)
{
    X509_STORE *store = X509_STORE_new();
    if (store == NULL)
        abort();
    for (size_t i = 0; i < count; i++) {
        if (X509_STORE_load_file(store, paths[i]) != 1) {
            char why[256];
            openssl_errors(why, sizeof(why));
            snprintf(err, err_size, "%s: cannot load the certificates (%s)", paths[i], why);
            X509_STORE_free(store);
            return -1;
        }
    }
    *out = store;
    return 0;
}
