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

/* Frees everything; wipes the private keys. Accepts NULL. */
void cm_certs_free(cm_certs_t *certs);

#endif
