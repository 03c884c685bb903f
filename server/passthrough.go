package server

import (
	"context"
	"errors"
	"io"
	"net/http"
)

// passThrough relays a request with "tpo": {"mode": "off"} to the policy
// server unchanged (without its "tpo" object). A streamed answer is relayed
// as it arrives, event by event; nothing is recorded in the store.
func (s *Server) passThrough(ctx context.Context, w http.ResponseWriter, p *plan) {
	deadline := func() bool { return errors.Is(ctx.Err(), context.DeadlineExceeded) }
	if !p.Stream {
		body, err := s.up.Chat(ctx, p.Body)
		if err != nil {
			s.log.Warn("pass-through request failed", "err", err)
			writeError(w, passThroughError(err, deadline()))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return
	}
	rc, err := s.up.ChatStream(ctx, p.Body)
	if err != nil {
		s.log.Warn("pass-through stream failed", "err", err)
		writeError(w, passThroughError(err, deadline()))
		return
	}
	defer rc.Close()
	sw := startSSE(w)
	if err := relay(sw, rc); err != nil {
		if sw.err != nil {
			s.log.Info("client left during a pass-through stream", "err", sw.err)
			return
		}
		// The upstream stream broke: tell the client in-band.
		s.log.Warn("pass-through stream broke", "err", err)
		_ = sw.data(upstreamError(err, deadline()).body())
		_ = sw.done()
	}
}

// relay copies an SSE stream, flushing after every read so that each
// event reaches the client as soon as it arrives.
func relay(sw *sseWriter, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := sw.raw(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
