# RSS over time, one line per allocator, for the producer -> consumer run of the suite.
#   gnuplot -e "dat='rss_xmalloc.dat'; out='rss_xmalloc.png'" plot_rss.gp
# Data: blocks separated by two blank lines, each "# name" then "t_s rss_mib" rows.
set terminal pngcairo size 1000,520 font ",10" noenhanced
set output out
set title "bench_alloc --workload=xmalloc: RSS over time (producer -> consumer, every free remote)"
set xlabel "seconds"
set ylabel "RSS (MiB)"
set grid lc rgb "#dddddd"
set key outside right
stats dat nooutput
plot for [i=0:STATS_blocks-1] dat index i using 1:2 with lines lw 2 title columnheader(1)
