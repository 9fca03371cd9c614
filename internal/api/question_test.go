package api

import (
	"strings"
	"testing"
)

func TestAnswersMustFitWhatWasAsked(t *testing.T) {
	no := false
	qs := []QuestionInfo{
		{Question: "Which colour?", Header: "Colour", Options: []QuestionOption{{Label: "red"}, {Label: "blue"}}, Custom: &no},
		{Question: "Which days?", Header: "Days", Options: []QuestionOption{{Label: "mon"}, {Label: "tue"}}, Multiple: true},
		{Question: "Your name?", Header: "Name"},
	}
	for _, c := range []struct {
		a  AnswerRequest
		ok bool
	}{
		{AnswerRequest{Answers: [][]string{{"red"}, {"mon", "tue"}, {"Ada"}}}, true},
		{AnswerRequest{Answers: [][]string{{"blue"}, {"a day of my own"}, {"Ada"}}}, true},
		{AnswerRequest{Reject: true}, true},
		{AnswerRequest{Reject: true, Answers: [][]string{{"red"}, {"mon"}, {"Ada"}}}, false},
		{AnswerRequest{}, false},
		{AnswerRequest{Answers: [][]string{{"red"}, {"mon"}}}, false},                  // one per question
		{AnswerRequest{Answers: [][]string{{"purple"}, {"mon"}, {"Ada"}}}, false},      // options only
		{AnswerRequest{Answers: [][]string{{"red", "blue"}, {"mon"}, {"Ada"}}}, false}, // one only
		{AnswerRequest{Answers: [][]string{{"red"}, {"mon", "mon"}, {"Ada"}}}, false},  // twice
		{AnswerRequest{Answers: [][]string{{"red"}, {}, {"Ada"}}}, false},              // none
		{AnswerRequest{Answers: [][]string{{"red"}, {"mon"}, {""}}}, false},            // empty
		{AnswerRequest{Answers: [][]string{{"red"}, {"mon"}, {strings.Repeat("x", MaxAnswer+1)}}}, false},
	} {
		if err := CheckAnswer(qs, c.a); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok %v", c.a, err, c.ok)
		} else if err != nil && !strings.HasPrefix(err.Error(), "answers") {
			t.Errorf("%+v: %q does not name its field", c.a, err)
		}
	}
	for _, s := range []string{"", "pending", "answered", "rejected", "expired"} {
		if err := CheckQuestionState(s); err != nil {
			t.Errorf("state %q: %v", s, err)
		}
	}
	if err := CheckQuestionState("once"); err == nil {
		t.Error("state once is an approval's")
	}
}
