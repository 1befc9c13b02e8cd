module example.com/site

go 1.27

require example.com/greet v0.1.0

replace example.com/greet => ./greet
