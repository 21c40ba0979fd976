/* Wall-clock time for progress lines and benchmarks. */
#ifndef CU_CORE_TIMER_H
#define CU_CORE_TIMER_H

/* Seconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
double cu_now(void);

#endif
