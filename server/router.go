package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tpoproject/tpo/guard"
)

// endpoint is a route of the server: its path pattern (segments; "{id}"
// matches one), whether it takes an API key, and its handlers by method.
type endpoint struct {
	pattern string
	// bare: the pattern is the whole path; otherwise it may be prefixed
	// with /v1 (clients whose base URL lacks it).
	bare    bool
	auth    bool
	methods map[string]http.HandlerFunc
}

func (s *Server) endpoints() []endpoint {
	return []endpoint{
		{pattern: "/chat/completions", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleChat}},
		{pattern: "/models", auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleModels}},
		{pattern: "/responses", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleCreateResponse}},
		{pattern: "/responses/{id}", auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleGetResponse}},
		{pattern: "/responses/{id}/cancel", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleCancelResponse}},
		{pattern: "/files", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleUploadFile, http.MethodGet: s.handleListFiles}},
		{pattern: "/files/{id}", auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleGetFile, http.MethodDelete: s.handleDeleteFile}},
		{pattern: "/files/{id}/content", auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleFileContent}},
		{pattern: "/batches", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleCreateBatch, http.MethodGet: s.handleListBatches}},
		{pattern: "/batches/{id}", auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleGetBatch}},
		{pattern: "/batches/{id}/cancel", auth: true, methods: map[string]http.HandlerFunc{http.MethodPost: s.handleCancelBatch}},
		{pattern: "/healthz", bare: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.handleHealth}},
		{pattern: "/metrics", bare: true, auth: true, methods: map[string]http.HandlerFunc{http.MethodGet: s.metrics.handler().ServeHTTP}},
	}
}

// name is the route's name in metrics and messages: "/v1/responses/{id}".
func (e endpoint) name() string {
	if e.bare {
		return e.pattern
	}
	return "/v1" + e.pattern
}

// match reports whether path matches the endpoint, and the value of its
// {id} segment.
func (e endpoint) match(path string) (id string, ok bool) {
	if !e.bare {
		path = strings.TrimPrefix(path, "/v1")
	}
	want, got := strings.Split(e.pattern, "/"), strings.Split(path, "/")
	if len(want) != len(got) {
		return "", false
	}
	for i, w := range want {
		switch {
		case w == "{id}" && got[i] != "":
			id = got[i]
		case w != got[i]:
			return "", false
		}
	}
	return id, true
}

// route dispatches a request and returns the route's name for metrics.
func (s *Server) route(w http.ResponseWriter, r *http.Request) string {
	path := strings.TrimSuffix(r.URL.Path, "/")
	for _, ep := range s.routes {
		id, ok := ep.match(path)
		if !ok {
			continue
		}
		r.SetPathValue("id", id)
		s.serveEndpoint(w, r, ep)
		return ep.name()
	}
	guard.Hangup(w, r)
	var names []string
	for _, ep := range s.routes {
		for _, m := range sortedKeys(ep.methods) {
			names = append(names, m+" "+ep.name())
		}
	}
	writeError(w, &apiError{Status: http.StatusNotFound, Type: typeNotFound, Code: "unknown_url",
		Message: fmt.Sprintf("unknown route %s %s (this server has %s)", r.Method, r.URL.Path, strings.Join(names, ", "))})
	return "unknown"
}

// serveEndpoint answers a request for ep: 405 for another method, 401
// without a valid key, else ep's handler.
func (s *Server) serveEndpoint(w http.ResponseWriter, r *http.Request, ep endpoint) {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	h, ok := ep.methods[method]
	if !ok {
		allowed := sortedKeys(ep.methods)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		guard.Hangup(w, r)
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: "method_not_allowed",
			Message: fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, ep.name(), strings.Join(allowed, " or "))})
		return
	}
	if err := s.crossOrigin.Check(r); err != nil {
		// A form of another site's page can post here without the
		// browser asking first (an upload, a cancel); fetch cannot.
		guard.Hangup(w, r)
		writeError(w, &apiError{Status: http.StatusForbidden, Type: typeInvalidRequest, Code: "cross_origin",
			Message: "cross-origin request refused: the page of another site cannot send requests to this server"})
		return
	}
	if ep.auth {
		if aerr := s.authenticate(r); aerr != nil {
			// The body of a request without a key is not read, however
			// slowly it comes: the connection is closed after the 401.
			guard.Hangup(w, r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="tpo"`)
			writeError(w, aerr)
			return
		}
	}
	h(w, r)
}
