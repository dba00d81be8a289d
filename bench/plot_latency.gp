# Latency percentiles per allocator, allocate and free side by side, log y axis.
# Called by compare_allocators.sh:
#   gnuplot -e "alloc_dat='...'; free_dat='...'; out='x.png'; ncols=N; subtitle='...'" plot_latency.gp
# Data files: a header line "percentile name1 name2 ...", then one row per percentile.
if (!exists("subtitle")) subtitle = ""
set terminal pngcairo size 1400,620 font ",10" noenhanced
set output out
set multiplot layout 1,2 title "bench_alloc: latency per call (ns, timer overhead subtracted)\n".subtitle
set logscale y 10
set format y "%g"
set ylabel "ns per call (log scale)"
set xlabel "percentile"
set grid ytics mytics lc rgb "#dddddd"
set key top left box opaque
set offsets 0.2, 0.2, 0, 0
set style data linespoints
set title "allocate"
plot for [i=2:ncols] alloc_dat using 0:i:xtic(1) title columnheader(i) lw 2 pt i
set title "free"
plot for [i=2:ncols] free_dat using 0:i:xtic(1) title columnheader(i) lw 2 pt i
unset multiplot
