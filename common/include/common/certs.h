/*
 * The pass type certificates of CERTS_DIR, shared by the signer (to sign bundles) and the pusher
 * (TLS client authentication to APNs).
 *
 * Layout: CERTS_DIR/wwdr.pem (the WWDR intermediate) and one folder per pass type identifier holding
 * certificate.pem and private-key.pem (PEM, unencrypted). A folder is a pass type only if its name
 * starts with "pass."; other entries are ignored.
 *
 * cm_certs_load() checks each pass type: both files readable and parseable, the key matches the
 * certificate, the certificate's subject UID equals the folder name, the subject OU (the Team ID) is
 * present. When require_wwdr is set, wwdr.pem must be readable and parseable. Every problem found is
 * written to err (one "; "-separated sentence each, naming the file) and the call fails, so a
 * misconfigured service can print exactly what is wrong and exit non-zero. An empty folder (no pass
 * type) is an error too.
 *
 * cm_certs_load_checked() adds the signer's policy: a configurable WWDR (Apple's WWDR G4, compiled in,
 * by default), every certificate issued by it and valid now. It refuses pass types one by one instead
 * of failing as a whole, so a reload can keep what still works.
 */
#ifndef COMMON_CERTS_H
#define COMMON_CERTS_H

#include <stddef.h>
#include <time.h>

struct x509_st;
struct evp_pkey_st;

typedef struct cm_pass_identity {
    const char *pass_type_id; /* the folder name = the certificate's UID */
    const char *team_id;      /* the certificate's subject OU */
    const char *cert_path;    /* absolute or CERTS_DIR-relative path of certificate.pem */
    const char *key_path;     /* path of private-key.pem */
    struct x509_st *cert;
    struct evp_pkey_st *key;
    time_t not_before, not_after;
} cm_pass_identity_t;

typedef struct cm_certs cm_certs_t;

/* Loads every pass type of dir. On success returns 0 and *out (free with cm_certs_free). On failure
 * returns -1, writes the problems to err (always NUL-terminated) and leaves *out untouched. */
int cm_certs_load(const char *dir, int require_wwdr, cm_certs_t **out, char *err, size_t err_size);

/* The identity for a pass type identifier, or NULL. Borrowed; valid until cm_certs_free. */
const cm_pass_identity_t *cm_certs_find(const cm_certs_t *certs, const char *pass_type_id);

size_t cm_certs_count(const cm_certs_t *certs);
const cm_pass_identity_t *cm_certs_at(const cm_certs_t *certs, size_t index);

/* The WWDR intermediate, or NULL when it was not required and not present. Borrowed. */
struct x509_st *cm_certs_wwdr(const cm_certs_t *certs);

/* Apple's WWDR G4 intermediate, PEM (certs/AppleWWDRCAG4.pem of the source tree, compiled in). Public. */
extern const char cm_certs_apple_wwdr_g4_pem[];
#define CM_CERTS_BUILTIN_WWDR "built-in Apple WWDR G4"

typedef struct cm_certs_options {
    /* The WWDR intermediate (PEM file). NULL or "": dir/wwdr.pem when that file exists, else Apple's
     * WWDR G4 (cm_certs_apple_wwdr_g4_pem). */
    const char *wwdr_path;
    /* Refuse certificates (and a WWDR) not valid at now. 0 skips the date checks. */
    time_t now;
} cm_certs_options_t;

/* Told about each pass type folder that was refused: the folder name and its problems, "; "-separated
 * sentences each naming the file. Called during cm_certs_load_checked, on its thread. */
typedef void (*cm_certs_refused_fn)(void *data, const char *pass_type_id, const char *problems);

/* Loads every pass type of dir as cm_certs_load does, and also refuses a folder whose name is not a pass
 * type identifier (common/ids.h), a certificate that is not issued
 * by the WWDR (issuer name and signature; the message names both issuers) or is not valid at opt->now
 * (the message gives notBefore and notAfter). A refused pass type is left out of *out and reported
 * through refused (which may be NULL); it does not fail the call. Returns 0 with *out (free with
 * cm_certs_free; it may hold no pass type at all), or -1 with err when the WWDR or the folder itself
 * cannot be used (unreadable, not a certificate, expired), leaving *out untouched. */
int cm_certs_load_checked(const char *dir, const cm_certs_options_t *opt, cm_certs_refused_fn refused,
                          void *data, cm_certs_t **out, char *err, size_t err_size);

/* The UTF-8 text of the first subject entry of cert with nid (NID_userId, NID_commonName, ...), malloc'd;
 * NULL when absent, unreadable, or holding an embedded NUL (which would make comparisons lie). */
char *cm_certs_subject_text(const struct x509_st *cert, int nid);

/* Where the WWDR came from: its path, or CM_CERTS_BUILTIN_WWDR. "" when there is no WWDR. Borrowed. */
const char *cm_certs_wwdr_source(const cm_certs_t *certs);

/* The policy checks of cm_certs_load_checked on one identity: issued by wwdr (whose origin, for the
 * message, is wwdr_source) and, when now is not 0, valid at now. Returns 0, or -1 with the problems in
 * err. */
int cm_certs_check_identity(const cm_pass_identity_t *id, struct x509_st *wwdr, const char *wwdr_source,
                            time_t now, char *err, size_t err_size);

/* Adds a copy of id to certs (the certificate and key are shared by reference count, the strings
 * copied), keeping the identities sorted. Returns 0, or -1 when certs already holds that pass type or
 * is full. The copy lives as long as certs; id may be freed afterwards. */
int cm_certs_add(cm_certs_t *certs, const cm_pass_identity_t *id);

/* Frees everything; wipes the private keys. Accepts NULL. */
void cm_certs_free(cm_certs_t *certs);

#endif
