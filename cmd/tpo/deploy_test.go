package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Kubernetes manifests of deploy/, as far as the tests read them.
type (
	manifest struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			Replicas    *int     `yaml:"replicas"`
			Parallelism *int     `yaml:"parallelism"`
			Completions *int     `yaml:"completions"`
			Template    template `yaml:"template"`
		} `yaml:"spec"`
		StringData map[string]string `yaml:"stringData"`
	}
	template struct {
		Spec struct {
			RestartPolicy string      `yaml:"restartPolicy"`
			Containers    []container `yaml:"containers"`
		} `yaml:"spec"`
	}
	container struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name      string `yaml:"name"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		VolumeMounts []struct {
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
		SecurityContext struct {
			ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	}
)

// readManifests parses every YAML document of deploy/*.yaml, strictly
// (a key the test's types lack is fine; a syntax error is not).
func readManifests(t *testing.T) map[string][]manifest {
	t.Helper()
	files, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/ (%v)", err)
	}
	out := map[string][]manifest{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var m manifest
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", filepath.Base(f))
			}
			out[filepath.Base(f)] = append(out[filepath.Base(f)], m)
		}
	}
	return out
}

// TestDeployManifests checks the manifests of deploy/: they parse; every
// tpo container's arguments are flags its command has (checked by the tpo
// binary itself); every $(VAR) they use is set in the container's
// environment, from a Secret key that secret.example.yaml has; tpo serve
// has readiness and liveness probes on /healthz and resources, and keeps
// its files where every replica finds them; and the run Job runs pods in
// parallel on one queue of work.
func TestDeployManifests(t *testing.T) {
	all := readManifests(t)
	secrets := map[string]map[string]string{}
	for _, ms := range all {
		for _, m := range ms {
			if m.Kind == "Secret" {
				secrets[m.Metadata.Name] = m.StringData
			}
		}
	}
	kinds := map[string]bool{}
	for file, ms := range all {
		for _, m := range ms {
			kinds[m.Kind] = true
			for _, c := range m.Spec.Template.Spec.Containers {
				where := file + ": " + m.Kind + " " + m.Metadata.Name + ", container " + c.Name
				checkTPOArgs(t, where, c)
				checkEnv(t, where, c, secrets)
				checkResources(t, where, m.Kind, c)
				checkServeFiles(t, where, m, c, secrets)
			}
			if m.Kind == "Job" {
				checkJob(t, file, m)
			}
		}
	}
	for _, k := range []string{"Deployment", "Service", "Job", "Secret"} {
		if !kinds[k] {
			t.Errorf("deploy/ has no %s", k)
		}
	}
}

// tpoCommands are the commands whose flags the containers may use.
var tpoCommands = map[string]bool{"serve": true, "run": true, "ui": true, "report": true, "export": true, "eval": true}

// checkTPOArgs has the tpo binary parse a container's arguments, with -h
// after them: it prints its usage and exits 0 if every flag before exists
// and its value parses, and exits 2 naming the first that does not.
func checkTPOArgs(t *testing.T, where string, c container) {
	t.Helper()
	if len(c.Command) > 0 || len(c.Args) == 0 || !tpoCommands[c.Args[0]] {
		t.Errorf("%s: want the image's entrypoint (tpo) with a tpo command first in args, got command %q args %q", where, c.Command, c.Args)
		return
	}
	bin, err := buildTPO()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(append([]string(nil), c.Args...), "-h")...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err = cmd.Run()
	if err != nil || !strings.HasPrefix(stderr.String(), "usage: tpo "+c.Args[0]) {
		first, _, _ := strings.Cut(stderr.String(), "\n")
		t.Errorf("%s: tpo does not take %q: %v: %s", where, c.Args, err, first)
	}
}

var envRefRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnv checks that the $(VAR) references of the arguments are set in
// the container's environment, and that its Secret keys exist.
func checkEnv(t *testing.T, where string, c container, secrets map[string]map[string]string) {
	t.Helper()
	set := map[string]bool{}
	for _, e := range c.Env {
		set[e.Name] = true
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if _, ok := secrets[ref.Name][ref.Key]; !ok {
			t.Errorf("%s: %s comes from key %q of Secret %q, which secret.example.yaml does not have", where, e.Name, ref.Key, ref.Name)
		}
	}
	for _, a := range c.Args {
		for _, m := range envRefRE.FindAllStringSubmatch(a, -1) {
			if !set[m[1]] {
				t.Errorf("%s: argument %q uses $(%s), which the container's env does not set", where, a, m[1])
			}
		}
	}
}

// checkServeFiles checks where tpo serve keeps the files of the Files and
// Batch APIs. Replicas must share them, so a Deployment of several needs a
// PostgreSQL store, which keeps them (and refuses --files-dir): a batch's
// upload, its creation and the download of its output may each reach
// another pod. With a SQLite store on a read-only root file system,
// --files-dir must be on a mounted volume.
func checkServeFiles(t *testing.T, where string, m manifest, c container, secrets map[string]map[string]string) {
	t.Helper()
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		return
	}
	store, dir := "tpo.db", ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--store="); ok {
			store = expandEnv(v, c, secrets)
		}
		if v, ok := strings.CutPrefix(a, "--files-dir="); ok {
			dir = v
		}
	}
	if isStoreURL(store) {
		if dir != "" {
			t.Errorf("%s: --files-dir=%s with a PostgreSQL store, which keeps the files itself: tpo serve refuses it", where, dir)
		}
		return
	}
	if m.Spec.Replicas != nil && *m.Spec.Replicas > 1 {
		t.Errorf("%s: %d replicas on store %q: replicas must share a PostgreSQL store (their runs, jobs and files)", where, *m.Spec.Replicas, store)
	}
	if !c.SecurityContext.ReadOnlyRootFilesystem {
		return
	}
	for _, vm := range c.VolumeMounts {
		if dir != "" && (dir == vm.MountPath || strings.HasPrefix(dir, strings.TrimSuffix(vm.MountPath, "/")+"/")) {
			return
		}
	}
	t.Errorf("%s: the root file system is read-only: want --files-dir=DIR on a mounted volume (got %q)", where, dir)
}

// expandEnv replaces the $(VAR) references of a container argument by
// their values: the example Secret's, for variables set from it.
func expandEnv(arg string, c container, secrets map[string]map[string]string) string {
	return envRefRE.ReplaceAllStringFunc(arg, func(ref string) string {
		name := envRefRE.FindStringSubmatch(ref)[1]
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				return secrets[e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]
			}
		}
		return ref
	})
}

// checkResources checks the requests and limits, and serve's probes.
func checkResources(t *testing.T, where, kind string, c container) {
	t.Helper()
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: want cpu and memory requests and a memory limit", where)
	}
	if kind != "Deployment" {
		return
	}
	for name, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: want a %s probe on GET /healthz", where, name)
		}
	}
}

// checkJob checks that a Job runs several pods on one queue of work: a
// parallelism above 1 and no completions count (the Job is complete when
// its pods have exited 0), restarted on failure.
func checkJob(t *testing.T, file string, m manifest) {
	t.Helper()
	if m.Spec.Parallelism == nil || *m.Spec.Parallelism < 2 || m.Spec.Completions != nil {
		t.Errorf("%s: Job %s: want parallelism > 1 and no completions", file, m.Metadata.Name)
	}
	if p := m.Spec.Template.Spec.RestartPolicy; p != "OnFailure" && p != "Never" {
		t.Errorf("%s: Job %s: restartPolicy %q, want OnFailure or Never", file, m.Metadata.Name, p)
	}
}

// TestDockerfileGoVersion checks that the Dockerfile builds with the Go
// version go.mod asks for: the image cannot be built in CI (no Docker
// engine), so a version bump must not leave it behind unnoticed.
func TestDockerfileGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	got := regexp.MustCompile(`(?m)^FROM golang:(\d+\.\d+)\S* AS build`).FindSubmatch(df)
	if want == nil || got == nil {
		t.Fatalf("go.mod's go line %q, Dockerfile's build stage %q: one is missing", want, got)
	}
	if string(got[1]) != string(want[1]) {
		t.Errorf("the Dockerfile builds with Go %s, go.mod wants %s", got[1], want[1])
	}
	for _, w := range []string{"CGO_ENABLED=0", "./cmd/tpo", "USER 65532", "distroless/static"} {
		if !strings.Contains(string(df), w) {
			t.Errorf("the Dockerfile lacks %q", w)
		}
	}
}
