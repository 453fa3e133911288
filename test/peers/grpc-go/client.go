package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/examples/helloworld/helloworld"
	"google.golang.org/grpc/examples/route_guide/routeguide"
	"google.golang.org/grpc/status"
)

// Stream scenario shapes: the test derives the expected message counts and durations from these.
const (
	streamMessages = 5
	streamInterval = 50 * time.Millisecond
	// The client's deadline for the slow handler (which takes slowHandler): it expires first.
	slowDeadline      = 200 * time.Millisecond
	concurrentCalls   = 100
	concurrentWaitMs  = 50
	readyTimeout      = 20 * time.Second
	scenarioRPCTimout = 30 * time.Second
)

// rpcRecord is one JSON line of the client's output: what one RPC did, as the client saw it.
type rpcRecord struct {
	Method string `json:"method"` // full name, /package.Service/Method
	// The request's name (SayHello) or what the call was, for the test's messages.
	Request     string `json:"request"`
	Code        int    `json:"code"`
	Status      string `json:"status"`
	StartUnixNs int64  `json:"startUnixNs,string"` // a string: ns since the epoch do not fit a double
	EndUnixNs   int64  `json:"endUnixNs,string"`
	Sent        int    `json:"sent"`
	Received    int    `json:"received"`
	// The connection's local address: the client end of the tuple the spans are matched by.
	Local string `json:"local"`
}

type scenarioFunc func(*session) error

var scenarios = map[string]scenarioFunc{
	"unary":      unaryScenario,
	"streams":    streamsScenario,
	"concurrent": concurrentScenario,
}

func scenarioNames() string {
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// session is one client connection and the JSON lines written for its RPCs.
type session struct {
	conn    *grpc.ClientConn
	greeter helloworld.GreeterClient
	guide   routeguide.RouteGuideClient
	local   string
	dials   int
	mu      sync.Mutex
	out     *json.Encoder
}

func (s *session) record(method, request string, start time.Time, err error, sent, received int) {
	st := status.Convert(err)
	end := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if encodeErr := s.out.Encode(rpcRecord{
		Method: method, Request: request, Code: int(st.Code()), Status: st.Code().String(),
		StartUnixNs: start.UnixNano(), EndUnixNs: end.UnixNano(), Sent: sent, Received: received, Local: s.local,
	}); encodeErr != nil {
		fmt.Fprintf(os.Stderr, "grpc-peer: writing a record: %v\n", encodeErr)
		os.Exit(1)
	}
}

func transportCredentials(ca string) (credentials.TransportCredentials, error) {
	if ca == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", ca)
	}
	return credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}

// connect opens one connection and waits until it is ready, so that no RPC's measured time
// includes the TCP, TLS and HTTP/2 set-up.
func connect(target, ca string) (*session, error) {
	creds, err := transportCredentials(ca)
	if err != nil {
		return nil, err
	}
	s := &session{out: json.NewEncoder(os.Stdout)}
	dialer := func(ctx context.Context, address string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", address)
		if err == nil {
			s.mu.Lock()
			s.dials++
			s.local = conn.LocalAddr().String()
			s.mu.Unlock()
		}
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dialer))
	if err != nil {
		return nil, fmt.Errorf("creating the client for %s: %w", target, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	conn.Connect()
	for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
		if !conn.WaitForStateChange(ctx, state) {
			conn.Close()
			return nil, fmt.Errorf("the connection to %s was not ready within %s (last state %s)", target, readyTimeout, state)
		}
	}
	s.conn = conn
	s.greeter = helloworld.NewGreeterClient(conn)
	s.guide = routeguide.NewRouteGuideClient(conn)
	return s, nil
}

func runScenario(target, ca, name string) error {
	scenario, ok := scenarios[name]
	if !ok {
		return fmt.Errorf("-scenario %q: want one of %s", name, scenarioNames())
	}
	s, err := connect(target, ca)
	if err != nil {
		return err
	}
	err = scenario(s)
	s.conn.Close()
	if err != nil {
		return fmt.Errorf("scenario %s: %w", name, err)
	}
	if s.dials != 1 {
		return fmt.Errorf("scenario %s dialed %d connections; it must run on one", name, s.dials)
	}
	return nil
}

func (s *session) sayHello(name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := s.greeter.SayHello(ctx, &helloworld.HelloRequest{Name: name})
	received := 1
	if err != nil {
		received = 0
	}
	s.record(helloworld.Greeter_SayHello_FullMethodName, name, start, err, 1, received)
	return err
}

// unaryScenario: one SayHello of each outcome the server offers, then GetFeature. The errors are
// the expected outcomes; only an unexpected code fails the scenario.
func unaryScenario(s *session) error {
	calls := []struct {
		name    string
		timeout time.Duration
		want    string
	}{
		{"world", scenarioRPCTimout, "OK"},
		{nameNotFound, scenarioRPCTimout, "NotFound"},
		{nameInternal, scenarioRPCTimout, "Internal"},
		{namePlain, scenarioRPCTimout, "Unknown"},
		{nameDeadline, scenarioRPCTimout, "DeadlineExceeded"},
		{nameSlow, slowDeadline, "DeadlineExceeded"},
	}
	for _, call := range calls {
		got := status.Code(s.sayHello(call.name, call.timeout)).String()
		if got != call.want {
			return fmt.Errorf("SayHello(%q) ended %s, want %s", call.name, got, call.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioRPCTimout)
	defer cancel()
	start := time.Now()
	_, err := s.guide.GetFeature(ctx, &routeguide.Point{Latitude: 409146138, Longitude: -746188906})
	s.record(routeguide.RouteGuide_GetFeature_FullMethodName, "GetFeature", start, err, 1, 1)
	return err
}

// streamsScenario: each streaming kind once, streamMessages messages streamInterval apart.
func streamsScenario(s *session) error {
	for _, run := range []func(*session) error{listFeatures, recordRoute, routeChat} {
		if err := run(s); err != nil {
			return err
		}
	}
	return nil
}

func listFeatures(s *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioRPCTimout)
	defer cancel()
	start := time.Now()
	received := 0
	stream, err := s.guide.ListFeatures(ctx, &routeguide.Rectangle{Lo: &routeguide.Point{Latitude: streamMessages, Longitude: int32(streamInterval / time.Millisecond)}})
	for err == nil {
		if _, err = stream.Recv(); err == nil {
			received++
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	s.record(routeguide.RouteGuide_ListFeatures_FullMethodName, "ListFeatures", start, err, 1, received)
	return err
}

func recordRoute(s *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioRPCTimout)
	defer cancel()
	start := time.Now()
	sent, received := 0, 0
	stream, err := s.guide.RecordRoute(ctx)
	for err == nil && sent < streamMessages {
		time.Sleep(streamInterval)
		if err = stream.Send(&routeguide.Point{Latitude: int32(sent)}); err == nil {
			sent++
		}
	}
	if err == nil {
		var summary *routeguide.RouteSummary
		if summary, err = stream.CloseAndRecv(); err == nil {
			received++
			if summary.GetPointCount() != int32(sent) {
				err = fmt.Errorf("RecordRoute: the server counted %d points, %d were sent", summary.GetPointCount(), sent)
			}
		}
	}
	s.record(routeguide.RouteGuide_RecordRoute_FullMethodName, "RecordRoute", start, err, sent, received)
	return err
}

func routeChat(s *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioRPCTimout)
	defer cancel()
	start := time.Now()
	sent, received := 0, 0
	stream, err := s.guide.RouteChat(ctx)
	for err == nil && sent < streamMessages {
		time.Sleep(streamInterval)
		if err = stream.Send(&routeguide.RouteNote{Message: fmt.Sprintf("note %d", sent)}); err != nil {
			break
		}
		sent++
		if _, err = stream.Recv(); err == nil {
			received++
		}
	}
	if err == nil {
		err = stream.CloseSend()
	}
	if err == nil {
		if _, err = stream.Recv(); err == nil {
			err = errors.New("RouteChat: a note after the client half-closed")
		} else if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	s.record(routeguide.RouteGuide_RouteChat_FullMethodName, "RouteChat", start, err, sent, received)
	return err
}

// concurrentScenario: concurrentCalls SayHello calls released at once, each answered after
// concurrentWaitMs, so that they are all in flight together on the one connection.
func concurrentScenario(s *session) error {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	failures := make(chan error, concurrentCalls)
	for range concurrentCalls {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-release
			if err := s.sayHello(fmt.Sprintf("%s%d", prefixWait, concurrentWaitMs), scenarioRPCTimout); err != nil {
				failures <- err
			}
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	close(failures)
	return <-failures
}
