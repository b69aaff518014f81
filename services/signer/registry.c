/*
 * The pass type certificates in use: loaded at start, reloaded on SIGHUP without dropping a request.
 *
 * A generation (signer_identities_t) is an immutable cm_certs_t with a reference count. The loop
 * thread owns the count: a request takes a reference when it is handed to the pool and drops it in the
 * after-work callback, so a job signs with the generation it started with, and an old generation is
 * freed on the loop thread once its last job has answered. A reload reads the folder on the thread
 * pool (file reads and key parsing stay off the loop), then the after-work callback merges the result
 * with the current generation and swaps the pointer: RCU with the loop thread as the only writer.
 *
 * Policy (common/certs.h cm_certs_load_checked): each certificate has a key that matches, a UID equal to
 * its folder name, an OU (the Team ID), is issued by the configured WWDR and is valid now. At start any
 * refusal stops the signer (an operator sees it at once); on reload a refused pass type keeps its
 * previous certificate, and a reload that cannot read the WWDR or the folder keeps everything.
 */
#include "signer.h"

#include "common/log.h"
#include "common/metrics.h"

#include <math.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define EXPIRY_WARN_DAYS 30

struct signer_identities {
    cm_certs_t *certs;
    unsigned long generation;
    unsigned refs;
};

/* A pass type refused by a load, with why (collected on the pool, logged on the loop). */
struct refusal {
    char *ptid, *problems;
};

static struct {
    const char *dir, *wwdr_path;
    signer_metrics_t *metrics;
    signer_identities_t *current;
    unsigned long generations;
    /* the reload in the pool */
    uv_work_t work;
    int busy, again;
    void (*on_swapped)(void);
    cm_certs_t *loaded;
    int load_rc;
    char load_err[2048];
    struct refusal *refused;
    size_t nrefused;
} reg;

const cm_certs_t *signer_identities_certs(const signer_identities_t *ids)
{
    return ids->certs;
}

unsigned long signer_identities_generation(const signer_identities_t *ids)
{
    return ids->generation;
}

void signer_identities_release(signer_identities_t *ids)
{
    if (ids == NULL || --ids->refs > 0)
        return;
    cm_certs_free(ids->certs);
    free(ids);
}

signer_identities_t *signer_registry_acquire(void)
{
    if (reg.current != NULL)
        reg.current->refs++;
    return reg.current;
}

size_t signer_registry_count(void)
{
    return reg.current != NULL ? cm_certs_count(reg.current->certs) : 0;
}

static void on_refused(void *data, const char *ptid, const char *problems)
{
    (void)data;
    struct refusal *r = realloc(reg.refused, (reg.nrefused + 1) * sizeof(*r));
    if (r == NULL)
        abort();
    reg.refused = r;
    r[reg.nrefused].ptid = strdup(ptid);
    r[reg.nrefused].problems = strdup(problems);
    if (r[reg.nrefused].ptid == NULL || r[reg.nrefused].problems == NULL)
        abort();
    reg.nrefused++;
}

static void clear_refusals(void)
{
    for (size_t i = 0; i < reg.nrefused; i++) {
        free(reg.refused[i].ptid);
        free(reg.refused[i].problems);
    }
    free(reg.refused);
    reg.refused = NULL;
    reg.nrefused = 0;
}

/* Loads the folder into reg.loaded / reg.load_rc / reg.refused. Blocking: start-up or the pool. */
static void load_folder(void)
{
    cm_certs_options_t opt = {.wwdr_path = reg.wwdr_path, .now = time(NULL)};
    reg.loaded = NULL;
    reg.load_err[0] = '\0';
    reg.load_rc = cm_certs_load_checked(reg.dir, &opt, on_refused, NULL, &reg.loaded, reg.load_err,
                                        sizeof(reg.load_err));
}

static int is_refused(const char *ptid)
{
    for (size_t i = 0; i < reg.nrefused; i++)
        if (strcmp(reg.refused[i].ptid, ptid) == 0)
            return 1;
    return 0;
}

/* The first 16 hex digits of the certificate's SHA-256 fingerprint, to tell certificates apart in logs. */
static void fingerprint(X509 *cert, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    if (X509_digest(cert, EVP_sha256(), md, &len) != 1 || len < 8)
        return;
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void log_identity(const cm_pass_identity_t *id, const char *how, time_t now)
{
    char fp[17];
    fingerprint(id->cert, fp);
    double days = (double)(id->not_after - now) / 86400.0;
    CM_LOG(CM_LOG_INFO, "event=cert_loaded ptid=%s team=%s sha256=%s not_after=%lld days_left=%.1f how=%s",
           id->pass_type_id, id->team_id, fp, (long long)id->not_after, days, how);
    if (days < EXPIRY_WARN_DAYS)
        CM_LOG(CM_LOG_WARN, "event=cert_expires_soon ptid=%s file=%s not_after=%lld days_left=%.1f",
               id->pass_type_id, id->cert_path, (long long)id->not_after, days);
}

static void log_wwdr(const cm_certs_t *certs)
{
    char ou[64] = "";
    X509 *wwdr = cm_certs_wwdr(certs);
    X509_NAME_get_text_by_NID(X509_get_subject_name(wwdr), NID_organizationalUnitName, ou, sizeof(ou));
    CM_LOG(CM_LOG_INFO, "event=wwdr source=\"%s\" ou=\"%s\"", cm_certs_wwdr_source(certs), ou);
    if (strcmp(ou, "G4") != 0)
        CM_LOG(CM_LOG_WARN, "event=wwdr_not_g4 ou=\"%s\" reason=\"Wallet expects passes chained to WWDR G4\"",
               ou);
}

/* Makes certs the current generation. */
static void install(cm_certs_t *certs)
{
    signer_identities_t *ids = calloc(1, sizeof(*ids));
    if (ids == NULL)
        abort();
    ids->certs = certs;
    ids->refs = 1; /* the registry's own */
    ids->generation = ++reg.generations;
    signer_identities_t *old = reg.current;
    reg.current = ids;
    signer_identities_release(old);
    cm_metric_set(reg.metrics->cert_loaded, (double)cm_certs_count(certs), NULL);
    signer_registry_observe(time(NULL));
}

int signer_registry_load(const char *dir, const char *wwdr_path, signer_metrics_t *metrics)
{
    reg.dir = dir;
    reg.wwdr_path = wwdr_path;
    reg.metrics = metrics;
    load_folder();
    int rc = -1;
    if (reg.load_rc != 0) {
        CM_LOG(CM_LOG_ERROR, "event=certs_invalid dir=\"%s\" problems=\"%s\"", dir, reg.load_err);
        goto out;
    }
    for (size_t i = 0; i < reg.nrefused; i++)
        CM_LOG(CM_LOG_ERROR, "event=cert_refused ptid=%s reason=\"%s\"", reg.refused[i].ptid,
               reg.refused[i].problems);
    if (cm_certs_count(reg.loaded) == 0 && reg.nrefused == 0)
        CM_LOG(CM_LOG_ERROR,
               "event=certs_invalid dir=\"%s\" problems=\"no pass type folder (expected "
               "pass.<identifier>/certificate.pem)\"",
               dir);
    if (reg.nrefused > 0 || cm_certs_count(reg.loaded) == 0)
        goto out;
    log_wwdr(reg.loaded);
    time_t now = time(NULL);
    for (size_t i = 0; i < cm_certs_count(reg.loaded); i++)
        log_identity(cm_certs_at(reg.loaded, i), "start", now);
    install(reg.loaded);
    reg.loaded = NULL;
    rc = 0;
out:
    cm_certs_free(reg.loaded);
    reg.loaded = NULL;
    clear_refusals();
    return rc;
}

static void on_reload_work(uv_work_t *work)
{
    (void)work;
    load_folder();
}

/* Merges the loaded folder with the current generation (see signer_registry_reload) and logs why.
 * Returns the result label. */
static const char *merge_reload(void)
{
    time_t now = time(NULL);
    const cm_certs_t *old = reg.current->certs;
    if (reg.load_rc != 0) {
        CM_LOG(CM_LOG_ERROR, "event=certs_reload_failed dir=\"%s\" reason=\"%s\" kept=previous", reg.dir,
               reg.load_err);
        return "failed";
    }
    cm_certs_t *next = reg.loaded;
    /* a refused pass type keeps its previous certificate while that one still passes the checks
     * (against the new WWDR, at now) */
    for (size_t i = 0; i < reg.nrefused; i++) {
        const cm_pass_identity_t *prev = cm_certs_find(old, reg.refused[i].ptid);
        char why[1024] = "";
        int keep =
            prev != NULL && cm_certs_check_identity(prev, cm_certs_wwdr(next), cm_certs_wwdr_source(next),
                                                    now, why, sizeof(why)) == 0;
        if (keep && cm_certs_add(next, prev) != 0)
            keep = 0;
        CM_LOG(CM_LOG_ERROR, "event=cert_refused ptid=%s reason=\"%s\" kept=%s%s%s%s", reg.refused[i].ptid,
               reg.refused[i].problems, keep ? "previous" : "none",
               why[0] != '\0' ? " previous_refused=\"" : "", why, why[0] != '\0' ? "\"" : "");
    }
    if (cm_certs_count(next) == 0) {
        CM_LOG(CM_LOG_ERROR,
               "event=certs_reload_failed dir=\"%s\" reason=\"no usable pass type\" kept=previous", reg.dir);
        return "failed";
    }
    if (cm_certs_wwdr_source(next)[0] != '\0' &&
        strcmp(cm_certs_wwdr_source(next), cm_certs_wwdr_source(old)))
        log_wwdr(next);
    for (size_t i = 0; i < cm_certs_count(next); i++) {
        const cm_pass_identity_t *id = cm_certs_at(next, i);
        const cm_pass_identity_t *prev = cm_certs_find(old, id->pass_type_id);
        const char *how = prev == NULL ? "new" : X509_cmp(prev->cert, id->cert) == 0 ? "same" : "replaced";
        if (is_refused(id->pass_type_id))
            how = "kept";
        log_identity(id, how, now);
    }
    for (size_t i = 0; i < cm_certs_count(old); i++) {
        const char *ptid = cm_certs_at(old, i)->pass_type_id;
        if (cm_certs_find(next, ptid) != NULL)
            continue;
        if (!is_refused(ptid))
            CM_LOG(CM_LOG_WARN, "event=cert_removed ptid=%s reason=\"no folder any more\"", ptid);
        const char *labels[] = {ptid};
        cm_metric_set(reg.metrics->cert_expiry, NAN, labels);
    }
    install(next);
    reg.loaded = NULL;
    CM_LOG(CM_LOG_INFO, "event=certs_reloaded generation=%lu pass_types=%zu refused=%zu",
           reg.current->generation, cm_certs_count(next), reg.nrefused);
    return reg.nrefused > 0 ? "partial" : "ok";
}

static void on_reload_done(uv_work_t *work, int status)
{
    reg.busy = 0;
    const char *result = "failed";
    if (status != 0)
        CM_LOG(CM_LOG_ERROR, "event=certs_reload_failed reason=\"cancelled\" kept=previous");
    else
        result = merge_reload();
    int swapped = reg.loaded == NULL && reg.load_rc == 0 && strcmp(result, "failed") != 0;
    cm_certs_free(reg.loaded);
    reg.loaded = NULL;
    clear_refusals();
    const char *labels[] = {result};
    cm_metric_add(reg.metrics->cert_reloads, 1, labels);
    if (swapped && reg.on_swapped != NULL)
        reg.on_swapped();
    if (reg.again) {
        reg.again = 0;
        signer_registry_reload(work->loop, reg.on_swapped);
    }
}

void signer_registry_reload(uv_loop_t *loop, void (*on_swapped)(void))
{
    reg.on_swapped = on_swapped;
    if (reg.busy) {
        reg.again = 1;
        return;
    }
    CM_LOG(CM_LOG_INFO, "event=certs_reload dir=\"%s\"", reg.dir);
    reg.busy = 1;
    int r = uv_queue_work(loop, &reg.work, on_reload_work, on_reload_done);
    if (r != 0) {
        reg.busy = 0;
        CM_LOG(CM_LOG_ERROR, "event=certs_reload_failed reason=\"uv_queue_work: %s\" kept=previous",
               uv_strerror(r));
    }
}

int signer_registry_busy(void)
{
    return reg.busy;
}

void signer_registry_observe(time_t now)
{
    if (reg.current == NULL)
        return;
    for (size_t i = 0; i < cm_certs_count(reg.current->certs); i++) {
        const cm_pass_identity_t *id = cm_certs_at(reg.current->certs, i);
        const char *labels[] = {id->pass_type_id};
        cm_metric_set(reg.metrics->cert_expiry, (double)(id->not_after - now) / 86400.0, labels);
    }
}

void signer_registry_dispose(void)
{
    signer_identities_release(reg.current);
    reg.current = NULL;
}
