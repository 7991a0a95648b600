package main

import (
	"fmt"
	"os"
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
// It returns how many threads it changed and the first error.
func batchScheduling() (int, error) {
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		return 0, err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
	changed := 0
	var first error
	for _, task := range tasks {
		tid, err := strconv.Atoi(filepath.Base(task))
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			if first == nil && !os.IsNotExist(err) && err != unix.ESRCH {
				first = fmt.Errorf("setting SCHED_BATCH on thread %d: %w", tid, err)
			}
			continue
		}
		changed++
	}
	return changed, first
}
