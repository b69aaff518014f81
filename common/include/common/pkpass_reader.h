/*
 * The project's own reader of .pkpass archives: it checks what Wallet checks before it shows a pass,
 * so that a mistake is caught before a phone sees it. It opens an archive from memory (libzip), checks
 * its manifest (OpenSSL digests, jansson) and its detached CMS signature (OpenSSL CMS), and reports
 * every problem at once.
 *
 * What is checked, in this order:
 *   - the archive: every entry name is safe (cm_bundle_name_is_safe; folders end in '/'), no name
 *     appears twice (also not differing in case only), at most max_entries entries and max_bytes
 *     bytes decompressed in total (checked on the declared sizes before anything is decompressed, and
 *     again on the bytes read), and every entry reads back intact;
 *   - pass.json exists;
 *   - manifest.json: a JSON object mapping names to hex digests. Each listed file is hashed again
 *     with SHA-1 (40 hex digits) or SHA-256 (64). Reported: files whose digest differs, listed files
 *     that are missing, files in the archive that the manifest does not list, and a manifest that
 *     lists manifest.json or signature. "__MACOSX/..." entries and ".DS_Store" files that the
 *     manifest does not list are ignored (reported as such, not as tampering);
 *   - signature: a DER CMS SignedData over manifest.json. The signature itself (messageDigest and the
 *     signer's signature, like openssl cms -verify), whether it embeds the certificate that issued the
 *     signer's certificate (Apple: "Include the WWDR intermediate certificate"), and the signer's chain
 *     against the trust store. The chain is built from the trust store and the embedded certificates,
 *     without a purpose check (pass certificates are not S/MIME certificates: openssl's -purpose any).
 *
 * The verdict is the first that applies: malformed, unsigned, tampered, wrong_intermediate,
 * untrusted_chain, valid. Beside it, the report (JSON, see cm_pkpass_report_json) holds the problems
 * that led to it, warnings that do not change it (pass.json that is not strict JSON, an unreadable
 * pass.strings, an expired certificate while expiry is ignored, pass.json identifiers that differ
 * from the signer certificate's), the entries, the manifest findings, the signer certificate (subject
 * UID, OU, validity), every embedded certificate with its WWDR generation, the signingTime and digest
 * algorithm, pass.json's parse result and every pass.strings decoded (common/pkpass_strings.h).
 *
 * Everything here is reentrant; the trust store may be shared by threads (OpenSSL locks it).
 */
#ifndef COMMON_PKPASS_READER_H
#define COMMON_PKPASS_READER_H

#include <stddef.h>
#include <time.h>

#include "common/limits.h"
#include "common/manifest.h"

struct json_t;
struct x509_st;
struct x509_store_st;

/* Default caps: an archive the signer can produce (a pass model, its merged pass.json, the manifest
 * and the signature), with room for ignorable entries. */
#define CM_PKPASS_MAX_ENTRIES (4 * CM_TEMPLATE_MAX_FILES)
#define CM_PKPASS_MAX_BYTES   (CM_TEMPLATE_MAX_BYTES + CM_PASS_DOC_MAX_BYTES + (1u << 20))

typedef enum cm_pkpass_verdict {
    CM_PKPASS_VALID,    /* signed, the manifest describes the files, the signature and chain verify */
    CM_PKPASS_UNSIGNED, /* no signature file */
    CM_PKPASS_TAMPERED, /* a file differs from, is missing from or is unknown to the manifest, the
                           manifest lists itself or the signature, or the signature does not
                           match manifest.json */
    CM_PKPASS_WRONG_INTERMEDIATE, /* the signature does not embed the certificate that issued its signer */
    CM_PKPASS_UNTRUSTED_CHAIN,    /* the signer's chain does not verify against the trust store (or no trust
                                     store was given, or the signer certificate is not in the signature) */
    CM_PKPASS_MALFORMED,          /* not a readable pass archive: not a ZIP, unsafe or repeated names, over a
                                     cap, no pass.json, unreadable manifest.json or signature */
} cm_pkpass_verdict_t;

typedef struct cm_pkpass_options {
    struct x509_store_st *trust; /* trusted certificates (Apple root, WWDR), borrowed; NULL: the chain is not
                                    checked and the verdict is at best untrusted_chain */
    int ignore_expiry;           /* do not check certificate validity dates (openssl -no_check_time) */
    time_t at_time;              /* when not 0, check validity dates at this time (openssl -attime) */
    size_t max_entries;          /* 0: CM_PKPASS_MAX_ENTRIES */
    size_t max_bytes;            /* decompressed, all entries together; 0: CM_PKPASS_MAX_BYTES */
} cm_pkpass_options_t;

typedef struct cm_pkpass_report cm_pkpass_report_t;

/* Inspects the archive data[0..len) (only read during the call). opts may be NULL (all defaults).
 * Always produces a report, also for bytes that are no archive at all (verdict malformed): returns 0
 * with *out (free with cm_pkpass_report_free). Returns -1 only when data is NULL with len > 0. */
int cm_pkpass_inspect(const void *data, size_t len, const cm_pkpass_options_t *opts,
                      cm_pkpass_report_t **out);

cm_pkpass_verdict_t cm_pkpass_report_verdict(const cm_pkpass_report_t *report);

/* "valid", "unsigned", "tampered", "wrong_intermediate", "untrusted_chain" or "malformed". */
const char *cm_pkpass_verdict_name(cm_pkpass_verdict_t verdict);

/* The problems behind the verdict, one sentence each, in the order they were found. Borrowed. */
size_t cm_pkpass_report_problem_count(const cm_pkpass_report_t *report);
const char *cm_pkpass_report_problem(const cm_pkpass_report_t *report, size_t index);

/* The whole report as a JSON object; the README of tools/pkpass-inspect describes its keys. Borrowed,
 * valid until cm_pkpass_report_free; do not change it. */
struct json_t *cm_pkpass_report_json(const cm_pkpass_report_t *report);

/* A file of the archive (folders excluded) with its bytes, or NULL. Borrowed. */
const cm_file_t *cm_pkpass_report_file(const cm_pkpass_report_t *report, const char *name);

/* Accepts NULL. */
void cm_pkpass_report_free(cm_pkpass_report_t *report);

/* Loads every certificate of the PEM files paths[0..count) into a new trust store. Returns 0 with *out
 * (free with X509_STORE_free), or -1 with the file and reason in err. */
int cm_pkpass_trust_load(const char *const *paths, size_t count, struct x509_store_st **out, char *err,
                         size_t err_size);

/* Names the generation of a WWDR intermediate (its subject CN contains "Worldwide Developer Relations
 * Certification Authority"): the subject OU when it is "G<n>" ("G4"); else "2008" or "2013" for the
 * two issues of Apple's first one, told apart by serial number (0x19 and 0x01DEBCC4396DA010), "G1"
 * for another serial. Returns 0 with the name in out, or -1 when cert is no WWDR certificate. */
int cm_pkpass_wwdr_generation(const struct x509_st *cert, char *out, size_t out_size);

#endif
