package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/examples/helloworld/helloworld"
)

// loadResult is the load client's one JSON line.
type loadResult struct {
	Calls          int     `json:"calls"`
	Seconds        float64 `json:"seconds"`
	CallsPerSecond float64 `json:"callsPerSecond"`
	P50Ms          float64 `json:"p50Ms"`
	P99Ms          float64 `json:"p99Ms"`
	Connections    int     `json:"connections"`
	Concurrency    int     `json:"concurrency"`
	// The load client's own CPU (user + system) over the whole run: the kernel side of tracing
	// (socket hooks, uprobes) runs in its syscalls.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// runLoad calls SayHello from `concurrency` goroutines over `connections` connections for
// `duration`, each goroutine one call at a time; any failed call fails the run.
func runLoad(target, ca string, connections, concurrency int, duration time.Duration) error {
	if connections < 1 || concurrency < connections {
		return fmt.Errorf("-connections %d -concurrency %d: want 1 <= connections <= concurrency", connections, concurrency)
	}
	sessions := make([]*session, connections)
	for i := range sessions {
		s, err := connect(target, ca)
		if err != nil {
			return err
		}
		defer s.conn.Close()
		sessions[i] = s
	}
	latencies := make([][]time.Duration, concurrency)
	failures := make([]error, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for g := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			greeter := sessions[g%connections].greeter
			request := &helloworld.HelloRequest{Name: "load"}
			mine := make([]time.Duration, 0, 1<<16)
			for {
				callStart := time.Now()
				if callStart.After(deadline) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), scenarioRPCTimout)
				_, err := greeter.SayHello(ctx, request)
				cancel()
				if err != nil {
					failures[g] = err
					break
				}
				mine = append(mine, time.Since(callStart))
			}
			latencies[g] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(failures...); err != nil {
		return fmt.Errorf("load: a SayHello failed: %w", err)
	}
	all := slices.Concat(latencies...)
	if len(all) == 0 {
		return errors.New("load: no call completed")
	}
	slices.Sort(all)
	percentile := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return fmt.Errorf("load: getrusage: %w", err)
	}
	cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	return json.NewEncoder(os.Stdout).Encode(loadResult{
		Calls: len(all), Seconds: elapsed.Seconds(), CallsPerSecond: float64(len(all)) / elapsed.Seconds(),
		P50Ms: percentile(0.50), P99Ms: percentile(0.99), Connections: connections, Concurrency: concurrency, CPUSeconds: cpu.Seconds(),
	})
}
