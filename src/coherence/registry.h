/*
 * registry.h - the instance registry in Redis and GET /cluster
 * (registry.c).  Coherence thread only, except coh_registry_init(), called
 * by coh_create().
 */
#ifndef RINGCACHE_COH_REGISTRY_H
#define RINGCACHE_COH_REGISTRY_H

struct coh;
struct coh_msg;
struct coh_pend;
struct redisReply;

/* Sets the instance id (given or generated), the registry's key names and
 * our registry value.  0, -EINVAL (bad id) or -ENOMEM (the caller frees
 * what was allocated). */
int coh_registry_init(struct coh *c, const char *instance_id, const char *advertise,
		      const char *version);
void coh_registry_beat(struct coh *c);
void coh_registry_reply(struct coh *c, struct coh_pend *p, struct redisReply *r);
void coh_registry_bye(struct coh *c);
void coh_cluster_send(struct coh *c, struct coh_msg *m);
void coh_cluster_reply(struct coh *c, struct coh_msg *m, struct redisReply *r);

#endif
