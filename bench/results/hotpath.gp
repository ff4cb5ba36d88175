# Rendered by bench/run, in this folder: gnuplot hotpath.gp
set terminal pngcairo size 1400,600 font ",10"
set output "hotpath.png"
set title "Instructions per malloc+free pair (callgrind; lower is better)"
set ylabel "instructions"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 scale 0
set grid ytics
set key outside right top

set datafile missing "NaN"
plot "hotpath.dat" using 2:xtic(1) title columnheader(2) lc rgb "#9400d3", "hotpath.dat" using 3 title columnheader(3) lc rgb "#d9a6f0", "hotpath.dat" using 4 title columnheader(4) lc rgb "#009e73", "hotpath.dat" using 5 title columnheader(5) lc rgb "#56b4e9", "hotpath.dat" using 6 title columnheader(6) lc rgb "#e69f00", "hotpath.dat" using 7 title columnheader(7) lc rgb "#f0e442"
