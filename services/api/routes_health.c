/* GET /healthz (the process answers) and GET /readyz (Redis is connected). */
#include "app.h"
#include "redis_async.h"

static int on_healthz(void *data, h2o_req_t *req)
{
    cm_httpd_send_bytes(req, 200, "text/plain", "ok\n", 3);
    return 0;
}

static int on_readyz(void *data, h2o_req_t *req)
{
    api_app_t *app = data;
    if (!api_redis_is_connected(app->redis)) {
        cm_httpd_send_bytes(req, 503, "text/plain", "redis: not connected\n", 21);
        return 0;
    }
    cm_httpd_send_bytes(req, 200, "text/plain", "ok\n", 3);
    return 0;
}

void api_routes_health_register(api_app_t *app)
{
    cm_httpd_route(app->httpd, "/healthz", on_healthz, app);
    cm_httpd_route(app->httpd, "/readyz", on_readyz, app);
}
