package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerGreetsByName(t *testing.T) {
	rec := httptest.NewRecorder()
	handler(rec, httptest.NewRequest("GET", "/?name=mini", nil))
	if got := rec.Body.String(); !strings.Contains(got, "Hello, mini") {
		t.Fatalf("unexpected answer %q", got)
	}
}
