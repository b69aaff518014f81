/*
 * The admin API, for the issuer's own systems. Every call needs "Authorization: Bearer $ADMIN_TOKEN".
 * Errors are JSON: {"error": "..."} plus details where they help (file, line, column).
 *
 *   PUT   /admin/v1/templates/{templateId}            body: zip of a pass model      201 new, 200 replaced
 *   PUT   /admin/v1/passes/{ptid}/{serial}             {"templateId", "pass": {...}}  201 created, 200
 * replaced PATCH /admin/v1/passes/{ptid}/{serial}             JSON merge patch               200, 404 unknown
 *   GET   /admin/v1/passes/{ptid}/{serial}             stored state + device count    200, 404
 *   GET   /admin/v1/passes/{ptid}/{serial}/pkpass      the signed bundle              200, 404, 503
 *   PUT   /admin/v1/passes/{ptid}/{serial}/files/{name} body: the file's bytes      201 new, 200 replaced
 *   DELETE /admin/v1/passes/{ptid}/{serial}/files/{name}                             200, 404
 * ({name} is one segment, "strip@2x.png", or two, "fr.lproj/logo.png".)
 * Uploads that Wallet would refuse get 422 with every problem (see the README).
 *   GET   /admin/v1/pkpasses?pass={ptid}/{serial}&...  2 to 10 signed bundles (.pkpasses) 200, 400, 404, 503
 */
#include "app.h"
#include "admin.h"
#include "common/bundle_zip.h"
#include "common/path.h"
#include "request.h"

#include <stdio.h>
#include <string.h>

static int method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* /admin/v1/passes/{ptid}/{serial}/files/{name}: op has the identifiers; takes it. */
static int on_pass_file(api_op_t *op, h2o_req_t *req, const cm_path_t *path)
{
    int n = path->count == 7 ? snprintf(op->file, sizeof(op->file), "%s", path->seg[6])
                             : snprintf(op->file, sizeof(op->file), "%s/%s", path->seg[6], path->seg[7]);
    if (n < 0 || (size_t)n >= sizeof(op->file) || !cm_bundle_name_is_safe(op->file)) {
        cm_httpd_send_error(
            req, 400,
            "file name not allowed (printable ASCII without spaces, no \".\" or \"..\" part, at "
            "most one folder)");
        api_op_free(op);
        return 0;
    }
    if (method_is(req, "PUT")) {
        api_admin_put_pass_file(op, req);
    } else if (method_is(req, "DELETE")) {
        api_admin_delete_pass_file(op, req);
    } else {
        api_op_free(op);
        return api_method_not_allowed(req, "PUT, DELETE");
    }
    return 0;
}

static int on_admin(void *data, h2o_req_t *req)
{
    api_app_t *app = data;
    char token[CM_AUTH_TOKEN_MAX + 1];
    if (api_authorization(req, "Bearer", token, sizeof(token)) != 0 ||
        !api_secret_equal(token, app->cfg.admin_token)) {
        cm_httpd_add_header(req, "WWW-Authenticate", "Bearer");
        cm_httpd_send_error(req, 401, "missing or wrong Authorization: Bearer <ADMIN_TOKEN>");
        return 0;
    }
    cm_path_t path;
    if (cm_path_split(req->path.base, req->path.len, &path) != 0) {
        cm_httpd_send_error(req, 400, "malformed path");
        return 0;
    }
    api_op_t *op = NULL;
    if (path.count == 4 && cm_path_is(&path, 2, "templates")) {
        if (!method_is(req, "PUT"))
            return api_method_not_allowed(req, "PUT");
        op = api_op_new(app, req);
        if (api_path_id(&path, 3, cm_id_is_plain, op->template_id, sizeof(op->template_id)) != 0) {
            cm_httpd_send_error(req, 400, "templateId must be 1 to %d characters [A-Za-z0-9._-]", CM_ID_MAX);
            api_op_free(op);
            return 0;
        }
        api_admin_put_template(op, req);
        return 0;
    }
    if (path.count == 3 && cm_path_is(&path, 2, "pkpasses"))
        return api_admin_get_pkpasses(app, req);

    int is_file = (path.count == 7 || path.count == 8) && cm_path_is(&path, 5, "files");
    if ((path.count != 5 && path.count != 6 && !is_file) || !cm_path_is(&path, 2, "passes") ||
        (path.count == 6 && !cm_path_is(&path, 5, "pkpass"))) {
        cm_httpd_send_error(req, 404, "no such admin resource (see the README's admin API table)");
        return 0;
    }
    op = api_op_new(app, req);
    if (api_path_id(&path, 3, cm_id_is_pass_type, op->ptid, sizeof(op->ptid)) != 0) {
        cm_httpd_send_error(req, 400,
                            "passTypeIdentifier must start with \"pass.\" and use [A-Za-z0-9.-] (at most %d)",
                            CM_ID_MAX);
        api_op_free(op);
        return 0;
    }
    if (api_path_id(&path, 4, cm_id_is_plain, op->serial, sizeof(op->serial)) != 0) {
        cm_httpd_send_error(req, 400, "serialNumber must be 1 to %d characters [A-Za-z0-9._-]", CM_ID_MAX);
        api_op_free(op);
        return 0;
    }
    if (is_file)
        return on_pass_file(op, req, &path);
    if (path.count == 6) {
        if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
            api_op_free(op);
            return api_method_not_allowed(req, "GET, HEAD");
        }
        api_reply_bundle(op, 1);
        return 0;
    }
    if (method_is(req, "PUT") || method_is(req, "PATCH")) {
        op->is_patch = method_is(req, "PATCH");
        api_admin_write_pass(op, req);
    } else if (method_is(req, "GET")) {
        api_admin_get_pass(op, req);
    } else {
        api_op_free(op);
        return api_method_not_allowed(req, "GET, PUT, PATCH");
    }
    return 0;
}

void api_routes_admin_register(api_app_t *app)
{
    cm_httpd_route(app->httpd, "/admin/v1", on_admin, app);
}
