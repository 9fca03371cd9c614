package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// decode reads a JSON body into v strictly: one object, known fields only,
// within the size limit. It answers the error itself and reports false.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	// The Content-Type is not insisted on (curl -d sends a form type); the
	// body must be one JSON object whatever it says.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); strings.HasPrefix(mt, "multipart/") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes", s.MaxBody))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return false
	}
	if err := repeatedKey(body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: "+err.Error())
		return false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: "+jsonProblem(err))
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_json", "malformed JSON body: data after the object")
		return false
	}
	return true
}

// repeatedKey refuses an object that names a key twice, in any case:
// encoding/json would keep the last, matching keys case-insensitively
// ("api_key" and "API_KEY"), and two readers of one body could each
// believe a different value.
func repeatedKey(body []byte) error {
	d := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		t, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // Decode reports malformed JSON
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := t.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: t == '{', key: t == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				k := strings.ToLower(t)
				if top.keys[k] {
					return fmt.Errorf("the key %q appears twice (keys are matched without regard to case)", t)
				}
				top.keys[k] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
