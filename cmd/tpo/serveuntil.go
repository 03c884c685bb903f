package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// shutdown says how a server stops once its context ends.
type shutdown struct {
	// grace is how long the requests in flight get to finish.
	grace time.Duration
	// stopping, when set, is called as the shutdown starts.
	stopping func()
	// overrun, when set, is called once grace has passed with requests
	// still in flight, to make them end; they get five seconds more.
	overrun func()
}

// serveUntil serves hs on ln until ctx ends, then shuts it down as sd
// says; connections still open at the end are closed. It returns when
// the server has stopped.
func serveUntil(ctx context.Context, hs *http.Server, ln net.Listener, sd shutdown) error {
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if sd.stopping != nil {
		sd.stopping()
	}
	err := shutdownWithin(hs, sd.grace)
	if errors.Is(err, context.DeadlineExceeded) && sd.overrun != nil {
		sd.overrun()
		err = shutdownWithin(hs, 5*time.Second)
	}
	if err != nil {
		err = errors.Join(err, hs.Close())
	}
	<-served // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func shutdownWithin(hs *http.Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return hs.Shutdown(ctx)
}
