package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/taosagent/taosagent/internal/api"
	"github.com/taosagent/taosagent/internal/client"
)

func runQuestions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("questions", stderr)
	mk := clientFlags(fs)
	state := fs.String("state", api.QuestionPending, "pending, answered, rejected, expired, or all")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if *state == "all" {
		*state = ""
	}
	if err := api.CheckQuestionState(*state); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	qs, err := c.Questions(ctx, *state)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(qs)
	}
	return paged(stdout, func(w io.Writer) error {
		for i, q := range qs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s  %s  %s  %s\n", q.ID, q.Agent, q.State, q.Created.Local().Format("2006-01-02 15:04:05"))
			showQuestions(w, q.Questions)
			switch {
			case len(q.Answers) > 0:
				fmt.Fprintf(w, "  answered by %s: %s\n", q.By, answersText(q.Answers))
			case q.State != api.QuestionPending:
				fmt.Fprintf(w, "  %s by %s %s\n", q.State, q.By, q.Message)
			default:
				fmt.Fprintf(w, "  answer: taosagent answer %s ANSWER… (one per question), or --reject\n", q.ID)
			}
		}
		if len(qs) == 0 {
			fmt.Fprintln(w, "no questions")
		}
		return nil
	})
}

// showQuestions prints what a model asks, numbered so that a person can
// answer by number.
func showQuestions(w io.Writer, qs []api.QuestionInfo) {
	for i, q := range qs {
		more := ""
		if q.Multiple {
			more = " (one or more, comma-separated)"
		}
		fmt.Fprintf(w, "  %d. [%s] %s%s\n", i+1, q.Header, q.Question, more)
		for j, o := range q.Options {
			fmt.Fprintf(w, "     %d) %s — %s\n", j+1, o.Label, o.Description)
		}
		if q.Custom == nil || *q.Custom {
			fmt.Fprintln(w, "     or an answer of your own")
		}
	}
}

func answersText(as [][]string) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, strings.Join(a, ", "))
	}
	return strings.Join(parts, "; ")
}

func runAnswer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("answer", stderr)
	mk := clientFlags(fs)
	reject := fs.Bool("reject", false, "decline to answer: the agent's question tool ends with an error")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() < 1 || (*reject && fs.NArg() != 1) || (!*reject && fs.NArg() < 2) {
		return fmt.Errorf("%w: want ID ANSWER… (one per question), or ID --reject", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	req := api.AnswerRequest{Reject: *reject}
	if !*reject {
		q, err := findQuestion(ctx, c, id)
		if err != nil {
			return err
		}
		if len(fs.Args()[1:]) != len(q.Questions) {
			return fmt.Errorf("%w: question %s asks %d question(s); give one answer each", errUsage, id, len(q.Questions))
		}
		for i, a := range fs.Args()[1:] {
			req.Answers = append(req.Answers, resolveAnswer(q.Questions[i], a))
		}
	}
	q, err := c.Answer(ctx, id, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", q.ID, q.State)
	return nil
}

// findQuestion is question request id, as the daemon lists it.
func findQuestion(ctx context.Context, c *client.Client, id string) (api.Question, error) {
	qs, err := c.Questions(ctx, "")
	if err != nil {
		return api.Question{}, err
	}
	for _, q := range qs {
		if q.ID == id {
			return q, nil
		}
	}
	return api.Question{}, fmt.Errorf("question %s: not found", id)
}

// resolveAnswer reads a person's answer to q: an option's number or label,
// for a question that takes several a comma-separated list of them, or
// else text of their own (which the daemon refuses where q allows none).
func resolveAnswer(q api.QuestionInfo, s string) []string {
	s = strings.TrimSpace(s)
	option := func(p string) (string, bool) {
		p = strings.TrimSpace(p)
		if n, err := strconv.Atoi(p); err == nil && n >= 1 && n <= len(q.Options) {
			return q.Options[n-1].Label, true
		}
		for _, o := range q.Options {
			if strings.EqualFold(o.Label, p) {
				return o.Label, true
			}
		}
		return "", false
	}
	if l, ok := option(s); ok {
		return []string{l}
	}
	if q.Multiple && strings.Contains(s, ",") {
		var out []string
		for _, p := range strings.Split(s, ",") {
			l, ok := option(p)
			if !ok {
				return []string{s}
			}
			out = append(out, l)
		}
		return out
	}
	return []string{s}
}

// askQuestion prompts a person at a terminal for the answers to question
// request id (an empty answer to the first declines it).
func askQuestion(ctx context.Context, c *client.Client, in *bufio.Reader, w io.Writer, id string, qs []api.QuestionInfo) {
	fmt.Fprintln(w, "the agent asks:")
	showQuestions(w, qs)
	req := api.AnswerRequest{}
	for i, q := range qs {
		fmt.Fprintf(w, "answer to %d (a number, a label, or your own words; empty to decline): ", i+1)
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "" {
			req = api.AnswerRequest{Reject: true}
			break
		}
		req.Answers = append(req.Answers, resolveAnswer(q, line))
	}
	if _, err := c.Answer(ctx, id, req); err != nil {
		fmt.Fprintln(w, "could not answer:", err)
	}
}

func runConversations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("conversations", stderr)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want AGENT", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	cs, err := c.Conversations(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(cs)
	}
	for _, cv := range cs {
		mark := " "
		if cv.Current {
			mark = "*"
		}
		fmt.Fprintf(stdout, "%s %s  %3d turns  last %s  %s\n", mark, cv.ID, cv.Turns, cv.LastTurn.Local().Format("2006-01-02 15:04"), cv.Title)
	}
	if len(cs) == 0 {
		fmt.Fprintln(stdout, "no conversations yet")
	}
	return nil
}

func runResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("resume", stderr)
	mk := clientFlags(fs)
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want AGENT CONVERSATION", errUsage)
	}
	c, err := mk()
	if err != nil {
		return err
	}
	if err := c.Resume(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: messages go to conversation %s\n", fs.Arg(0), fs.Arg(1))
	return nil
}
