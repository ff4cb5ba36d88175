# Rendered by bench/run, in this folder: gnuplot rss.gp
set terminal pngcairo size 1400,600 font ",10"
set output "rss.png"
set title "Peak RSS (median; lower is better)"
set ylabel "MiB (log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 scale 0
set grid ytics
set key outside right top
set logscale y
set datafile missing "NaN"
plot "rss.dat" using 2:xtic(1) title columnheader(2) lc rgb "#9400d3", "rss.dat" using 3 title columnheader(3) lc rgb "#d9a6f0", "rss.dat" using 4 title columnheader(4) lc rgb "#009e73", "rss.dat" using 5 title columnheader(5) lc rgb "#56b4e9", "rss.dat" using 6 title columnheader(6) lc rgb "#e69f00", "rss.dat" using 7 title columnheader(7) lc rgb "#f0e442"
