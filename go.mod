module github.com/taosagent/taosagent

go 1.26.8
