// Package hook holds what boxtap needs to run as an OCI runtime hook and as
// an OCI runtime wrapper, apart from the tracing itself:
//
//   - reading and checking the container state a runtime writes to a hook's
//     stdin, and which stage asks for what (ReadState, ParseStage);
//   - the io.boxtap.trace annotation and its options (ParseAnnotation);
//   - which runtime launched a container and the identity its own
//     annotations give (DetectRuntime, ContainerInfo, Tenant);
//   - the container's cgroup from its bundle's config.json when the init
//     PID cannot tell (BundleCgroup);
//   - runc's command line, and adding boxtap's hooks to a bundle's
//     config.json (ParseRuncArgs, AddHooks, InstallHooks);
//   - the per-container tracer's run files, readiness pipe and cgroup of
//     its own (RunDir, WaitReady, NewTracerCgroup), and waiting for a
//     process that is not our child (WaitExit).
package hook
