package httpx

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestMeterCountsRequestsAndRetries(t *testing.T) {
	h, _ := failingThen(2, 503, `{"error":{"message":"busy"}}`, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := newClient(t, fast(srv.URL))
	m := &tpo.Meter{}
	ctx := tpo.WithMeter(context.Background(), m)
	for i := 0; i < 2; i++ {
		if _, err := c.PostJSON(ctx, "/x", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := m.Usage(), (tpo.Usage{Requests: 2, Retries: 2}); got != want {
		t.Errorf("meter: got %+v, want %+v", got, want)
	}

	// A call that fails for good counts its retries but no request.
	h2, _ := failingThen(100, 400, `{"error":{"message":"bad"}}`, nil)
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	c2 := newClient(t, fast(srv2.URL))
	m2 := &tpo.Meter{}
	if _, err := c2.PostJSON(tpo.WithMeter(context.Background(), m2), "/x", nil, nil); err == nil {
		t.Fatal("want an error")
	}
	if got, want := m2.Usage(), (tpo.Usage{}); got != want {
		t.Errorf("meter after a 400: got %+v, want %+v", got, want)
	}
	// Without a meter nothing breaks.
	if _, err := c.PostJSON(context.Background(), "/x", nil, nil); err != nil {
		t.Fatal(err)
	}
}
