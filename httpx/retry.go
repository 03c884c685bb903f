package httpx

import "context"

// Reasons of a retry other than an HTTP status, which is given as its
// number ("429", "503").
const (
	ReasonConnection = "connection error" // refused, reset or dropped
	ReasonTimeout    = "timeout"          // the attempt's timeout passed
	ReasonMalformed  = "malformed response"
)

// Retry describes one failed attempt that a Client is about to retry.
type Retry struct {
	Name   string // the client's role: "policy", "reward", "judge"
	URL    string // base URL of the replica that failed
	Reason string // the HTTP status ("429") or one of the Reason constants
	Err    error  // the failure
}

// RetryObserver learns of every retry of the calls made under a context
// that carries it. It is called from many goroutines at once.
type RetryObserver interface {
	ObserveRetry(Retry)
}

type retryObserverKey struct{}

// WithRetryObserver returns ctx carrying o: every Client call made under
// the returned context tells o of each attempt it retries. Retries are
// routine (a busy server answers 429 or 503), so they are logged at debug
// level only; an observer lets a program count them and say so once.
func WithRetryObserver(ctx context.Context, o RetryObserver) context.Context {
	return context.WithValue(ctx, retryObserverKey{}, o)
}

func retryObserverFrom(ctx context.Context) RetryObserver {
	o, _ := ctx.Value(retryObserverKey{}).(RetryObserver)
	return o
}
