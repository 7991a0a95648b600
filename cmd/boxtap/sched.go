package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// batchScheduling puts every thread of this process under SCHED_BATCH.
// boxtap's reader wakes up each time the kernel has a batch of records for
// it; under SCHED_NORMAL each wakeup preempts whatever runs on that CPU,
// usually the traced service, which shows in its tail latency. A SCHED_BATCH
// thread gets the same CPU share but never preempts on wakeup: it runs when
// the current task's slice ends. Threads started later inherit the policy.
// It returns the first error; threads that exited meanwhile are skipped.
func batchScheduling() error {
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		return err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
	var first error
	for _, task := range tasks {
		tid, err := strconv.Atoi(filepath.Base(task))
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && first == nil && !errors.Is(err, unix.ESRCH) {
			first = fmt.Errorf("setting SCHED_BATCH on thread %d: %w", tid, err)
		}
	}
	return first
}
