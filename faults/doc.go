// Package faults runs the watershed pipeline as separate operating-system
// processes against real Kafka and Cassandra and injects the faults that
// production brings: replicas killed with SIGKILL and restarted, a replica
// stopped with SIGTERM, the Kafka broker restarted, Cassandra stopped for a
// while, an ingest edge killed with requests in flight. Its integration
// tests (build tag `integration`, named TestIntegrationFaults*) drive the
// device simulator meanwhile and then check that every message of every
// package an edge accepted is stored exactly once, that every view server
// agrees with the simulator's ground truth, that the dead-letter topic holds
// exactly the injected bad records, and that the consumer lag returns to
// zero (issue 6; docs/reliability.md).
//
// The package holds the harness: Proc supervises one process (its own
// process group, restarted when it dies unless it was stopped on purpose),
// Infra restarts the services through scripts/infra/infra.sh, Cluster
// starts the edges, the processor replicas and the view servers, Front
// spreads the simulator's requests over the edges, and HTTPView reads the
// view API back into device states for internal/reconcile.
package faults
