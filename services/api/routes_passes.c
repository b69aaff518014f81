/*
 * GET|HEAD /v1/passes/{ptid}/{serial}: the latest signed pass, for a device holding the pass.
 *   401 without or with a wrong "Authorization: ApplePass <token>"; 404 unknown pass;
 *   304 when If-Modified-Since is not older than the pass; 200 application/vnd.apple.pkpass with
 *   Last-Modified otherwise; 503 + Retry-After when the signer cannot be reached.
 * The bundle comes from the signer (which caches it per pass version); the api never signs.
 */
#include "app.h"
#include "common/log.h"
#include "common/httpdate.h"
#include "common/path.h"
#include "request.h"
#include "signer_client.h"

#include <stdio.h>
#include <string.h>

struct bundle_request {
    api_op_t *op;
    int as_attachment;
};

static void on_bundle(const api_signer_result_t *res, void *data)
{
    struct bundle_request *br = data;
    api_op_t *op = br->op;
    char reason[256];
    h2o_req_t *req = api_op_req(op);
    if (req == NULL)
        goto out;
    if (res->status == 200) {
        char date[CM_HTTPDATE_SIZE];
        if (res->last_modified[0] == '\0')
            cm_httpdate_format(op->last_modified, date);
        cm_httpd_add_header(req, "Last-Modified", res->last_modified[0] != '\0' ? res->last_modified : date);
        cm_httpd_add_header(req, "Cache-Control", "no-cache");
        if (br->as_attachment) {
            char disposition[CM_ID_MAX + 64];
            snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s.pkpass\"", op->serial);
            cm_httpd_add_header(req, "Content-Disposition", disposition);
        }
        CM_LOG(CM_LOG_INFO, "event=pass_served ptid=%s serial=%s version=%s bytes=%zu", op->ptid, op->serial,
               res->version, res->len);
        cm_httpd_send_bytes(req, 200, "application/vnd.apple.pkpass", res->body, res->len);
    } else if (res->status == 404) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
    } else if (res->status == 0 || res->status == 503) {
        CM_LOG(CM_LOG_ERROR, "event=signer_unavailable ptid=%s serial=%s status=%d reason=\"%s\"", op->ptid,
               op->serial, res->status, cm_log_clean(reason, sizeof(reason), res->error, strlen(res->error)));
        cm_httpd_add_header(req, "Retry-After", "10");
        cm_httpd_send_error(req, 503, "the signer is unavailable, try again later");
    } else {
        CM_LOG(CM_LOG_ERROR, "event=signer_failed ptid=%s serial=%s status=%d reason=\"%s\"", op->ptid,
               op->serial, res->status, cm_log_clean(reason, sizeof(reason), res->error, strlen(res->error)));
        cm_httpd_send_error(req, 502, "the signer could not build the pass (status %d)", res->status);
    }
out:
    api_op_free(op);
    free(br);
}

void api_reply_bundle(api_op_t *op, int as_attachment)
{
    struct bundle_request *br = malloc(sizeof(*br));
    if (br == NULL)
        abort();
    br->op = op;
    br->as_attachment = as_attachment;
    api_signer_fetch(op->app->signer, op->ptid, op->serial, on_bundle, br);
}

static void get_authorized(api_op_t *op, h2o_req_t *req)
{
    h2o_iovec_t ims = cm_httpd_header(req, "if-modified-since");
    time_t since;
    if (ims.base != NULL && cm_httpdate_parse(ims.base, ims.len, &since) == 0 && op->last_modified <= since) {
        char date[CM_HTTPDATE_SIZE];
        cm_httpdate_format(op->last_modified, date);
        cm_httpd_add_header(req, "Last-Modified", date);
        cm_httpd_send_empty(req, 304);
        api_op_free(op);
        return;
    }
    api_reply_bundle(op, 0);
}

static int on_passes(void *data, h2o_req_t *req)
{
    api_app_t *app = data;
    cm_path_t path;
    size_t v1;
    if (api_v1_path_or_reply(app, req, &path, &v1) != 0)
        return 0;
    if (path.count - v1 != 4 || !cm_path_is(&path, v1 + 1, "passes"))
        return -1;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return api_method_not_allowed(req, "GET, HEAD");
    api_op_t *op = api_op_new(app, req);
    if (api_applepass_or_reply(op, req) != 0) {
        api_op_free(op);
        return 0;
    }
    if (api_path_id(&path, v1 + 2, cm_id_is_pass_type, op->ptid, sizeof(op->ptid)) != 0 ||
        api_path_id(&path, v1 + 3, cm_id_is_plain, op->serial, sizeof(op->serial)) != 0) {
        cm_httpd_send_error(req, 404, "no such pass");
        api_op_free(op);
        return 0;
    }
    api_pass_authorize(op, get_authorized);
    return 0;
}

void api_routes_passes_register(api_app_t *app)
{
    api_route_v1(app, "/passes", on_passes);
}
