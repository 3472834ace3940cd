/*
 * test_lease.c - the fill-lease table (lease.h) alone, on a fake clock:
 * grant, wait, fill, revoke, give up, expiry hand-over, waiter timeout,
 * limits, tokens, and the counters.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/hash.h"
#include "ringcache/lease.h"

#define MS 1000000ull

static struct {
#define LEASE_VALUE(name, type, help) _Atomic uint64_t name;
	LEASE_STATS(LEASE_VALUE)
#undef LEASE_VALUE
} st;

static const uint8_t seed[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct lease_tab *make(uint32_t max_leases, uint32_t max_waiters)
{
	struct lease_limits lim = { .ttl_ns = 2000 * MS, .wait_ns = 1000 * MS,
				    .max_leases = max_leases, .max_waiters = max_waiters };
	struct lease_counters c = {
#define LEASE_PTR(name, type, help) .name = &st.name,
		LEASE_STATS(LEASE_PTR)
#undef LEASE_PTR
	};
	struct lease_tab *t = NULL;

	memset(&st, 0, sizeof(st));
	CHECK_EQ(lease_tab_create(&t, &lim, &c, seed), 0);
	return t;
}

#define K(s) s, (uint32_t)strlen(s), hash_key(s, strlen(s))

static uint64_t get(_Atomic uint64_t *c)
{
	return atomic_load(c);
}

static void test_grant_wait_fill(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[3];
	char tok[LEASE_TOKEN_LEN + 1], tok2[LEASE_TOKEN_LEN + 1];

	CHECK_EQ(lease_miss(t, K("k"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(strlen(tok), LEASE_TOKEN_LEN);
	CHECK(lease_token_valid(tok, strlen(tok)));
	CHECK(lease_holds(t, K("k"), tok, strlen(tok)));
	CHECK(!lease_holds(t, K("other"), tok, strlen(tok)));
	/* the others wait, in order */
	CHECK_EQ(lease_miss(t, K("k"), 1 * MS, &w[1], tok2), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("k"), 2 * MS, &w[2], tok2), LEASE_WAIT);
	CHECK_EQ(lease_count(t), 1);
	CHECK_EQ(lease_waiting(t), 2);
	CHECK_EQ(get(&st.lease_waiters), 2);
	/* lease_try never waits */
	CHECK_EQ(lease_try(t, K("k"), 3 * MS, tok2), LEASE_REFUSED);
	CHECK_EQ(lease_waiting(t), 2);
	/* a different key is independent */
	CHECK_EQ(lease_try(t, K("j"), 3 * MS, tok2), LEASE_GRANTED);
	CHECK(strcmp(tok, tok2) != 0);

	struct lease_waiter *all = lease_filled(t, K("k"));
	CHECK(all == &w[1]);
	CHECK(all && all->next == &w[2]);
	CHECK(w[2].next == NULL);
	CHECK_EQ(lease_waiting(t), 0);
	CHECK_EQ(lease_count(t), 1);      /* "j" */
	CHECK(!lease_holds(t, K("k"), tok, strlen(tok)));   /* a second fill: 409 */
	CHECK(lease_filled(t, K("k")) == NULL);
	/* nothing is due: the waiters left the deadline list */
	struct lease_event ev;
	CHECK_EQ(lease_tick(t, 1500 * MS, &ev), 0);
	CHECK_EQ(get(&st.lease_granted), 2);
	CHECK_EQ(get(&st.lease_filled), 1);
	CHECK_EQ(get(&st.lease_waiters_answered), 2);
	/* the next miss after a fill leases again */
	CHECK_EQ(lease_miss(t, K("k"), 4 * MS, &w[0], tok2), LEASE_GRANTED);
	CHECK(strcmp(tok, tok2) != 0);
	lease_tab_destroy(t);
}

static void test_revoke_and_give_up(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[3], *h;
	char tok[LEASE_TOKEN_LEN + 1], t1[LEASE_TOKEN_LEN + 1], t2[LEASE_TOKEN_LEN + 1];

	CHECK_EQ(lease_miss(t, K("k"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("k"), 0, &w[1], t1), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("k"), 0, &w[2], t1), LEASE_WAIT);
	/* a wrong token changes nothing */
	CHECK_EQ(lease_end(t, K("k"), "nope", 4, LEASE_END_ABANDONED, 5 * MS, &h, t1), -ENOENT);
	CHECK(h == NULL);
	CHECK(lease_holds(t, K("k"), tok, strlen(tok)));
	/* the holder gives up: the oldest waiter gets a new token */
	CHECK_EQ(lease_end(t, K("k"), tok, strlen(tok), LEASE_END_ABANDONED, 5 * MS, &h, t1), 0);
	CHECK(h == &w[1]);
	CHECK(strcmp(t1, tok) != 0);
	CHECK(!lease_holds(t, K("k"), tok, strlen(tok)));
	CHECK(lease_holds(t, K("k"), t1, strlen(t1)));
	CHECK_EQ(lease_waiting(t), 1);
	/* a DELETE revokes whatever it is: the next waiter */
	CHECK_EQ(lease_end(t, K("k"), NULL, 0, LEASE_END_REVOKED, 6 * MS, &h, t2), 0);
	CHECK(h == &w[2]);
	CHECK(!lease_holds(t, K("k"), t1, strlen(t1)));
	CHECK(lease_holds(t, K("k"), t2, strlen(t2)));
	/* nobody left: the entry goes */
	CHECK_EQ(lease_end(t, K("k"), NULL, 0, LEASE_END_REVOKED, 7 * MS, &h, t1), 0);
	CHECK(h == NULL);
	CHECK_EQ(lease_count(t), 0);
	CHECK_EQ(lease_end(t, K("k"), NULL, 0, LEASE_END_REVOKED, 7 * MS, &h, t1), -ENOENT);
	CHECK_EQ(get(&st.lease_revoked), 2);
	CHECK_EQ(get(&st.lease_abandoned), 1);
	CHECK_EQ(get(&st.lease_handed_over), 2);
	CHECK_EQ(get(&st.lease_granted), 3);
	CHECK_EQ(get(&st.leases), 0);
	lease_tab_destroy(t);
}

static void test_time(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[4];
	struct lease_event ev;
	char tok[LEASE_TOKEN_LEN + 1];

	/* lease at 0 (expires at 2000 ms); waiters at 500 and 1500 (deadlines
	 * 1500 and 2500); another key leased at 100 with a waiter at 200 */
	CHECK_EQ(lease_miss(t, K("a"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("b"), 100 * MS, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("b"), 200 * MS, &w[3], tok), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("a"), 500 * MS, &w[1], tok), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("a"), 1500 * MS, &w[2], tok), LEASE_WAIT);

	/* what the loop may sleep until: the earliest of both lists */
	CHECK_EQ(lease_next_due(t), 1200 * MS);
	CHECK_EQ(lease_tick(t, 1199 * MS, &ev), 0);
	CHECK_EQ(lease_tick(t, 1200 * MS, &ev), 1);     /* b's waiter */
	CHECK_EQ(lease_next_due(t), 1500 * MS);
	CHECK_EQ(ev.kind, LEASE_EV_TIMED_OUT);
	CHECK(ev.w == &w[3]);
	CHECK_EQ(lease_tick(t, 1200 * MS, &ev), 0);
	CHECK_EQ(lease_tick(t, 1500 * MS, &ev), 1);
	CHECK_EQ(ev.kind, LEASE_EV_TIMED_OUT);
	CHECK(ev.w == &w[1]);
	CHECK_EQ(lease_waiting(t), 1);
	/* a's lease expires at 2000: handed to w[2], which stops waiting */
	CHECK_EQ(lease_tick(t, 2000 * MS, &ev), 1);
	CHECK_EQ(ev.kind, LEASE_EV_HANDED);
	CHECK(ev.w == &w[2]);
	CHECK(lease_holds(t, K("a"), ev.token, strlen(ev.token)));
	CHECK(!lease_holds(t, K("a"), tok, strlen(tok)));
	CHECK_EQ(lease_waiting(t), 0);
	CHECK_EQ(lease_next_due(t), 2100 * MS);        /* b's lease */
	/* b (expires 2100) goes with nobody waiting: no event */
	CHECK_EQ(lease_tick(t, 2100 * MS, &ev), 0);
	CHECK_EQ(lease_next_due(t), 4000 * MS);        /* the handed lease */
	CHECK_EQ(lease_count(t), 1);
	/* the handed lease lasts a full ttl from its hand-over */
	CHECK_EQ(lease_tick(t, 3999 * MS, &ev), 0);
	CHECK_EQ(lease_count(t), 1);
	CHECK_EQ(lease_tick(t, 4000 * MS, &ev), 0);
	CHECK_EQ(lease_count(t), 0);
	CHECK_EQ(lease_next_due(t), UINT64_MAX);       /* nothing to wake for */
	CHECK_EQ(get(&st.lease_expired), 3);
	CHECK_EQ(get(&st.lease_waiters_timed_out), 2);
	CHECK_EQ(get(&st.lease_handed_over), 1);
	lease_tab_destroy(t);
}

/* Stop (now = UINT64_MAX): every waiter comes back timed out, oldest first,
 * across keys, and the table is empty after. */
static void test_stop_returns_everyone(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[6];
	struct lease_event ev;
	char tok[LEASE_TOKEN_LEN + 1];
	unsigned n = 0;

	CHECK_EQ(lease_miss(t, K("a"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("b"), 0, &w[0], tok), LEASE_GRANTED);
	for (unsigned i = 1; i < 6; i++)
		CHECK_EQ(lease_miss(t, K(i & 1 ? "a" : "b"), i * MS, &w[i], tok), LEASE_WAIT);
	while (lease_tick(t, UINT64_MAX, &ev)) {
		CHECK_EQ(ev.kind, LEASE_EV_TIMED_OUT);
		CHECK(ev.w == &w[1 + n]);
		n++;
	}
	CHECK_EQ(n, 5);
	CHECK_EQ(lease_count(t), 0);
	CHECK_EQ(lease_waiting(t), 0);
	lease_tab_destroy(t);
}

/* lease_leave(): a waiter whose request is gone (its client's connection
 * ended) leaves from anywhere in its key's queue, off the deadline list,
 * counted, the lease untouched; the others keep their order. */
static void test_leave(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[5], *h;
	struct lease_event ev;
	char tok[LEASE_TOKEN_LEN + 1], t1[LEASE_TOKEN_LEN + 1];

	memset(w, 0, sizeof(w));
	CHECK(lease_waiters_of(t, K("k")) == NULL);
	CHECK_EQ(lease_miss(t, K("k"), 0, NULL, tok), LEASE_GRANTED);
	CHECK(lease_waiters_of(t, K("k")) == NULL);
	for (unsigned i = 0; i < 5; i++) {
		CHECK(!lease_waits(&w[i]));
		CHECK_EQ(lease_miss(t, K("k"), (1 + i) * MS, &w[i], t1), LEASE_WAIT);
		CHECK(lease_waits(&w[i]));
	}
	/* the middle, then the oldest and the newest */
	lease_leave(t, &w[2]);
	CHECK(!lease_waits(&w[2]));
	CHECK_EQ(lease_waiting(t), 4);
	CHECK_EQ(get(&st.lease_waiters), 4);
	lease_leave(t, &w[0]);
	lease_leave(t, &w[4]);
	h = lease_waiters_of(t, K("k"));
	CHECK(h == &w[1] && h->next == &w[3] && w[3].next == NULL);
	CHECK_EQ(lease_waiting(t), 2);
	CHECK_EQ(get(&st.lease_waiters), 2);
	CHECK_EQ(get(&st.lease_waiters_gone), 3);
	CHECK_EQ(lease_count(t), 1);
	CHECK(lease_holds(t, K("k"), tok, strlen(tok)));
	/* the deadline list lost them: w[1] (due 1002 ms) times out, then
	 * nothing until w[3] at 1004 ms, not w[2]'s 1003 */
	CHECK_EQ(lease_next_due(t), 1002 * MS);
	CHECK_EQ(lease_tick(t, 1003 * MS, &ev), 1);
	CHECK(ev.w == &w[1] && ev.kind == LEASE_EV_TIMED_OUT);
	CHECK(!lease_waits(&w[1]));
	CHECK_EQ(lease_tick(t, 1003 * MS, &ev), 0);
	CHECK_EQ(lease_next_due(t), 1004 * MS);
	/* the lease ends: handed to the one still there */
	CHECK_EQ(lease_end(t, K("k"), tok, strlen(tok), LEASE_END_ABANDONED, 1003 * MS, &h, t1),
		 0);
	CHECK(h == &w[3]);
	CHECK(!lease_waits(&w[3]));
	CHECK(lease_waiters_of(t, K("k")) == NULL);
	/* a waiter that joins and leaves again: a fill finds nobody */
	CHECK_EQ(lease_miss(t, K("k"), 1004 * MS, &w[0], tok), LEASE_WAIT);
	lease_leave(t, &w[0]);
	CHECK(lease_filled(t, K("k")) == NULL);
	CHECK_EQ(lease_count(t), 0);
	CHECK_EQ(lease_waiting(t), 0);
	CHECK_EQ(lease_next_due(t), UINT64_MAX);
	CHECK_EQ(get(&st.lease_waiters_gone), 4);
	CHECK_EQ(get(&st.lease_waiters_answered), 0);
	CHECK_EQ(get(&st.lease_waiters_timed_out), 1);
	lease_tab_destroy(t);
}

/* lease_expire_all() (the invalidation feed broke): every lease ends at the
 * next tick, long before its ttl; a waiter is handed a new one, which lasts
 * a full ttl from then. */
static void test_expire_all(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w[2];
	struct lease_event ev;
	char ta[LEASE_TOKEN_LEN + 1], tb[LEASE_TOKEN_LEN + 1], tw[LEASE_TOKEN_LEN + 1];

	CHECK_EQ(lease_miss(t, K("a"), 0, &w[0], ta), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("b"), 0, &w[0], tb), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("a"), 10 * MS, &w[1], tw), LEASE_WAIT);
	lease_expire_all(t);
	CHECK_EQ(lease_tick(t, 100 * MS, &ev), 1);
	CHECK_EQ(ev.kind, LEASE_EV_HANDED);
	CHECK(ev.w == &w[1]);
	CHECK(!lease_holds(t, K("a"), ta, strlen(ta)));
	CHECK(lease_holds(t, K("a"), ev.token, strlen(ev.token)));
	CHECK_EQ(lease_tick(t, 100 * MS, &ev), 0);     /* b: nobody waits, it goes */
	CHECK(!lease_holds(t, K("b"), tb, strlen(tb)));
	CHECK_EQ(lease_count(t), 1);
	CHECK_EQ(get(&st.lease_expired), 2);
	CHECK_EQ(lease_tick(t, 2099 * MS, &ev), 0);
	CHECK_EQ(lease_count(t), 1);
	CHECK_EQ(lease_tick(t, 2100 * MS, &ev), 0);
	CHECK_EQ(lease_count(t), 0);
	lease_tab_destroy(t);
}

/* With a fleet: a lease marked as Redis's; a hand-over starts unmarked and
 * the expiry event says what the expired lease was (the shard releases it
 * in Redis). */
static void test_fleet_marks(void)
{
	struct lease_tab *t = make(0, 0);
	struct lease_waiter w;
	struct lease_event ev;
	char tok[LEASE_TOKEN_LEN + 1];

	CHECK_EQ(lease_miss(t, K("f"), 0, &w, tok), LEASE_GRANTED);
	CHECK(!lease_is_fleet(t, K("f"), tok, strlen(tok)));
	CHECK_EQ(lease_set_fleet(t, K("f"), "not-it"), -ENOENT);
	CHECK_EQ(lease_set_fleet(t, K("g"), tok), -ENOENT);
	CHECK_EQ(lease_set_fleet(t, K("f"), tok), 0);
	CHECK(lease_is_fleet(t, K("f"), tok, strlen(tok)));
	CHECK(!lease_is_fleet(t, K("f"), tok, strlen(tok) - 1));
	char unused[LEASE_TOKEN_LEN + 1];
	CHECK_EQ(lease_miss(t, K("f"), 1500 * MS, &w, unused), LEASE_WAIT);
	CHECK_EQ(lease_tick(t, 2000 * MS, &ev), 1);
	CHECK_EQ(ev.kind, LEASE_EV_HANDED);
	CHECK(ev.w == &w);
	CHECK(ev.prev_fleet);
	CHECK(strcmp(ev.prev, tok) == 0);
	CHECK(ev.key_len == 1 && memcmp(ev.key, "f", 1) == 0);
	CHECK(!lease_is_fleet(t, K("f"), ev.token, strlen(ev.token)));
	lease_tab_destroy(t);
}

static void test_limits(void)
{
	struct lease_tab *t = make(2, 2);
	struct lease_waiter w[4];
	char tok[LEASE_TOKEN_LEN + 1];

	CHECK_EQ(lease_miss(t, K("a"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("b"), 0, &w[0], tok), LEASE_GRANTED);
	CHECK_EQ(lease_miss(t, K("c"), 0, &w[0], tok), LEASE_REFUSED);  /* leases per shard */
	CHECK_EQ(lease_miss(t, K("a"), 0, &w[1], tok), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("a"), 0, &w[2], tok), LEASE_WAIT);
	CHECK_EQ(lease_miss(t, K("a"), 0, &w[3], tok), LEASE_REFUSED);  /* waiters per key */
	CHECK_EQ(get(&st.lease_refused), 2);
	CHECK_EQ(lease_waiting(t), 2);
	lease_tab_destroy(t);
}

static void test_tokens(void)
{
	struct lease_tab *t = make(0, 0), *u;
	struct lease_limits lim = { .ttl_ns = MS, .wait_ns = MS };
	char a[LEASE_TOKEN_LEN + 1], b[LEASE_TOKEN_LEN + 1];

	CHECK(!lease_token_valid("", 0));
	CHECK(!lease_token_valid("a b", 3));
	CHECK(!lease_token_valid("a\x7f", 2));
	CHECK(!lease_token_valid("\x80", 1));
	char longtok[LEASE_TOKEN_MAX + 1];
	memset(longtok, 'x', sizeof(longtok));
	CHECK(lease_token_valid(longtok, LEASE_TOKEN_MAX));
	CHECK(!lease_token_valid(longtok, LEASE_TOKEN_MAX + 1));
	/* the same key and serial give the same token; another key, another */
	CHECK_EQ(lease_try(t, K("k"), 0, a), LEASE_GRANTED);
	CHECK_EQ(lease_tab_create(&u, &lim, NULL, NULL), 0);   /* random key */
	CHECK_EQ(lease_try(u, K("k"), 0, b), LEASE_GRANTED);
	CHECK(strcmp(a, b) != 0);
	/* a prefix, or the token with one more byte, is not the token */
	CHECK(!lease_holds(t, K("k"), a, LEASE_TOKEN_LEN - 1));
	memcpy(longtok, a, LEASE_TOKEN_LEN);
	CHECK(!lease_holds(t, K("k"), longtok, LEASE_TOKEN_LEN + 1));
	CHECK(lease_holds(t, K("k"), longtok, LEASE_TOKEN_LEN));
	/* 1000 tokens of one table: all different, all hex */
	char seen[1000][LEASE_TOKEN_LEN + 1];
	bool ok = true;
	for (unsigned i = 0; i < 1000; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "t%u", i);
		CHECK_EQ(lease_try(u, key, (uint32_t)n, hash_key(key, (size_t)n), 0, seen[i]),
			 LEASE_GRANTED);
		ok &= strspn(seen[i], "0123456789abcdef") == LEASE_TOKEN_LEN;
		for (unsigned j = 0; j < i; j++)
			ok &= strcmp(seen[i], seen[j]) != 0;
	}
	CHECK(ok);
	lease_tab_destroy(u);
	lease_tab_destroy(t);
	lease_tab_destroy(NULL);
}

int main(void)
{
	test_grant_wait_fill();
	test_revoke_and_give_up();
	test_time();
	test_stop_returns_everyone();
	test_leave();
	test_expire_all();
	test_fleet_marks();
	test_limits();
	test_tokens();
	return check_done("test_lease");
}
