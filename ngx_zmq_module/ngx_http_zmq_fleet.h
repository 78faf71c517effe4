
/*
 * ngx_zmq: each gateway reports itself into the store (see zgw_fleet.h),
 * and every worker keeps the last list of the fleet for zmq_status.
 */


#ifndef _NGX_HTTP_ZMQ_FLEET_H_INCLUDED_
#define _NGX_HTTP_ZMQ_FLEET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>


char *ngx_http_zmq_fleet_instance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* in a worker, after the follower started; the source is Redis */
void ngx_http_zmq_fleet_start(ngx_cycle_t *cycle);
void ngx_http_zmq_fleet_stop(void);

/* the fleet as last read (a new reference), or NULL when none yet */
json_t *ngx_http_zmq_fleet_doc(void);


#endif /* _NGX_HTTP_ZMQ_FLEET_H_INCLUDED_ */
