/* GET /healthz: 200 "ok" while the loop answers. It does not touch Redis: a Redis outage shows as 503
 * on the bundle route, and restarting the signer would not cure it. */
#include "signer.h"

#include "common/httpd.h"
#include "common/path.h"

static int on_health(void *data, h2o_req_t *req)
{
    (void)data;
    cm_path_t path;
    if (cm_path_split(req->path.base, req->path.len, &path) != 0 || path.count != 1)
        return -1;
    cm_httpd_send_bytes(req, 200, "text/plain; charset=utf-8", "ok", 2);
    return 0;
}

void signer_routes_health_register(cm_httpd_t *httpd)
{
    cm_httpd_route(httpd, "/healthz", on_health, NULL);
}
