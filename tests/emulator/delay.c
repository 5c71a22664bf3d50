/*
 * delay: hold answers back for --latency-ms without holding a thread.
 *
 * The HTTP side runs on a small pool of threads, each serving many
 * connections, so a sleep in a handler would stall every connection of
 * that thread. Instead the handler suspends its connection and files it
 * here with the time it is due; one timer thread resumes connections as
 * they fall due, and libmicrohttpd then calls the handler again, which
 * sends the answer it made before. Connections wait in a binary min-heap
 * ordered by due time, because the latency can change at run time and
 * then a later request may be due before an earlier one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <microhttpd.h>

#include "emu.h"

struct held {
	int64_t due;		/* emu_mono_us */
	struct MHD_Connection *conn;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* a new head, or stopping */
	struct held *heap;
	size_t n;
	size_t cap;
	bool stopping;
	pthread_t thread;
} dq = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void heap_swap(size_t a, size_t b)
{
	struct held t = dq.heap[a];

	dq.heap[a] = dq.heap[b];
	dq.heap[b] = t;
}

static void heap_push(struct held h)
{
	size_t i = dq.n++;

	if (dq.n > dq.cap) {
		dq.cap = dq.cap ? dq.cap * 2 : 256;
		dq.heap = realloc(dq.heap, dq.cap * sizeof(*dq.heap));
		if (!dq.heap)
			abort();
	}
	dq.heap[i] = h;
	while (i > 0 && dq.heap[(i - 1) / 2].due > dq.heap[i].due) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct held heap_pop(void)
{
	struct held top = dq.heap[0];
	size_t i = 0, c;

	dq.heap[0] = dq.heap[--dq.n];
	for (;;) {
		c = 2 * i + 1;
		if (c >= dq.n)
			break;
		if (c + 1 < dq.n && dq.heap[c + 1].due < dq.heap[c].due)
			c++;
		if (dq.heap[i].due <= dq.heap[c].due)
			break;
		heap_swap(i, c);
		i = c;
	}
	return top;
}

static void *delay_run(void *arg)
{
	struct MHD_Connection *conn;
	struct timespec ts;
	int64_t now, due;

	(void)arg;
	pthread_mutex_lock(&dq.lock);
	while (!dq.stopping) {
		if (dq.n == 0) {
			pthread_cond_wait(&dq.cond, &dq.lock);
			continue;
		}
		now = emu_mono_us();
		due = dq.heap[0].due;
		if (due > now) {
			ts.tv_sec = due / 1000000;
			ts.tv_nsec = (due % 1000000) * 1000L;
			pthread_cond_timedwait(&dq.cond, &dq.lock, &ts);
			continue;
		}
		conn = heap_pop().conn;
		/* resume outside the lock: handlers may be filing new holds */
		pthread_mutex_unlock(&dq.lock);
		MHD_resume_connection(conn);
		pthread_mutex_lock(&dq.lock);
	}
	pthread_mutex_unlock(&dq.lock);
	return NULL;
}

int delay_start(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&dq.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&dq.thread, NULL, delay_run, NULL) != 0) {
		fprintf(stderr, "klipy-emulator: cannot start the timer "
			"thread\n");
		return -1;
	}
	return 0;
}

bool delay_hold(struct MHD_Connection *conn, long ms)
{
	struct held h = { .due = emu_mono_us() + ms * 1000, .conn = conn };

	pthread_mutex_lock(&dq.lock);
	if (dq.stopping) {
		pthread_mutex_unlock(&dq.lock);
		return false;
	}
	/*
	 * Suspend before filing, under the lock: the timer thread must never
	 * resume a connection that is not suspended yet.
	 */
	MHD_suspend_connection(conn);
	heap_push(h);
	if (dq.heap[0].conn == conn)
		pthread_cond_signal(&dq.cond);
	pthread_mutex_unlock(&dq.lock);
	return true;
}

void delay_stop(void)
{
	pthread_mutex_lock(&dq.lock);
	dq.stopping = true;
	pthread_cond_signal(&dq.cond);
	pthread_mutex_unlock(&dq.lock);
	pthread_join(dq.thread, NULL);

	/* libmicrohttpd must not be stopped with connections suspended */
	pthread_mutex_lock(&dq.lock);
	while (dq.n)
		MHD_resume_connection(heap_pop().conn);
	free(dq.heap);
	dq.heap = NULL;
	dq.cap = 0;
	pthread_mutex_unlock(&dq.lock);
}
