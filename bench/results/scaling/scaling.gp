# Rendered by bench/scaling, in this folder: gnuplot scaling.gp
set terminal pngcairo size 1680,800 font ",9"
set output "scaling.png"
set logscale x 2
set logscale y
set grid
set key top left font ",8"
set datafile missing "NaN"
set multiplot layout 2,4 title "Throughput against threads (median ops/s, 2 cores)"
set title "larson"
plot "scaling.dat" index 0 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 0 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 0 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 0 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 0 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "xmalloc"
plot "scaling.dat" index 1 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 1 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 1 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 1 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 1 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "cache-scratch"
plot "scaling.dat" index 2 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 2 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 2 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 2 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 2 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "cache-thrash"
plot "scaling.dat" index 3 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 3 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 3 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 3 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 3 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "mstress"
plot "scaling.dat" index 4 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 4 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 4 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 4 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 4 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "rptest"
plot "scaling.dat" index 5 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 5 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 5 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 5 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 5 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
set title "glibc-thread"
plot "scaling.dat" index 6 using 1:2 with linespoints title "hakmem" lc rgb "#9400d3", "scaling.dat" index 6 using 1:3 with linespoints title "glibc" lc rgb "#009e73", "scaling.dat" index 6 using 1:4 with linespoints title "mimalloc" lc rgb "#56b4e9", "scaling.dat" index 6 using 1:5 with linespoints title "jemalloc" lc rgb "#e69f00", "scaling.dat" index 6 using 1:6 with linespoints title "tcmalloc" lc rgb "#f0e442"
unset multiplot
