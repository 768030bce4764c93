"""Built-in English word lists for the letters and cipher tasks (lowercase ASCII, no network, no files).

COMMON: a few hundred everyday words of 3-10 letters (train/test). LONG: longer or rarer words of
11+ letters (out-of-distribution). SHORT: the 3-6 letter subset of COMMON (cipher plaintexts). Three-letter words are
there because people test a cipher with "the cat": a model trained without them decoded "wkh" as "thee".
"""

from __future__ import annotations

_COMMON = """
the and but for not you she his her our out day man boy cat dog sun car red big hat box cup pen map run sit
top hot new old one two six ten yes egg eye ear arm leg bed bus fox pig cow owl bee ant bat jam tea pie nut ice sea
sky air fun art ink key oil gas job joy law lip mud net pan pot rat rug saw toy van web win zoo add ask cry cut dig
eat fly get hit let mix pay put say see try use wet dry low far few raw shy sad mad fit fix fog gum hen hug kid lid
log mat mop nap pin rib rod row tag tap tin tip tub wig
about above accept across action actor address admit adult advice afraid after again against agent agree
ahead allow almost alone along already always amount angry animal answer apple april area argue army around
arrive artist autumn avoid award baby back bacon badge baker balance ball banana band bank barrel basket battle
beach bean bear beauty become bedroom beef before begin behind believe bell below bench berry better between
bicycle bird birthday black blanket blood blue board boat body bones book border bottle bottom bread break
breakfast bridge bright bring brother brown bubble bucket budget build burger butter button cabin cable cake
camera camp candle candy canvas captain carbon card care carpet carrot castle cattle ceiling center chair
chalk chance change cheese cherry chicken child circle city class clean clock cloud coach coast coffee coin
cold color comfort common cookie copper corner cotton country cousin cover crayon cream cricket crowd cup
current curtain dance danger daughter dinner doctor dollar donkey door dragon drawer dream dress drink driver
eagle early earth effect eight energy engine enough evening event example famous farmer father feather
fence field finger fire first flag flower forest fork friend frog fruit funny garden ghost giant ginger
giraffe glass glove goat gold grape grass green guitar hammer happy harbor hello helmet history hockey honey
horse hospital house hundred hunter island jacket jelly jungle kettle kitchen kitten knife ladder lake lamp
language lemon letter library light lion little lizard mango market meadow melon mirror monkey morning mother
mountain music needle number ocean office orange paper parrot pencil people pepper person piano pillow pirate
planet pocket potato puzzle rabbit radio rainbow river rocket school season shadow silver sister snake
soccer spider spring square squirrel strawberry street summer sunset table teacher tiger tomato tooth
tower travel tree turtle umbrella valley village violin water window winter yellow zebra
able acid aged also area army away baby back ball band bank base bath bear beat been beer bell belt best
bill bird blow blue boat body bomb bond bone book boom born boss both bowl bulk burn bush busy call calm came
camp card care case cash cast cell chat chip city club coal coat code cold come cook cool cope copy core cost
crew crop dark data date dawn days dead deal dear debt deep deny desk dial diet disk done door dose down draw
drew drop drug dual duke dust duty each earn ease east easy edge else even ever exit face fact fail fair fall
farm fast fate fear feed feel feet fell felt file fill film find fine firm fish five flat flow food foot form
fort four free from fuel full fund gain game gate gave gear gift girl give glad goal goes gone good gray grew
grow gulf hair half hall hand hang hard harm hate have head hear heat held hell help here hero high hill hire
hold hole holy home hope host hour huge hung hunt hurt idea inch into iron item jack join jump
jury just keen keep kept kick kind king knee knew know lack lady laid land lane last late lead left less
life lift like line link list live load loan lock long look lord lose loss lost love luck made mail main make
male many mark mass meal mean meat meet menu mere mild mile milk mill mind mine miss mode mood moon more most
move much must name navy near neck need news next nice nine none nose note okay once only onto open oral over
pace pack page paid pain pair palm park part pass past path peak pick pink pipe plan play plot plug plus poll
pool poor port post pull pure push race rail rain rank rare rate read real rear rely rent rest rice rich ride
ring rise risk road rock role roll roof room root rose rule rush safe said sake sale salt same sand save seat
seed seek seem seen self sell send sent ship shop shot show shut sick side sign site size skin slip slow snow
soft soil sold sole some song soon sort soul spot star stay step stop such suit sure take tale talk tall tank
tape task team tech tell tend term test text than that them then they thin this thus tide till time tiny told
toll tone took tool tour town tree trip true tune turn twin type unit upon used user vast very vice view
vote wage wait wake walk wall want ward warm wash wave ways weak wear week well went were west what when whom
wide wife wild will wind wine wing wire wise wish with wood word wore work yard yeah year your zero zone
"""

_LONG = """
accommodation acknowledgement administration aforementioned anthropology archaeological
autobiography bewilderment bibliography bookkeeping bureaucratic catastrophic characteristic
circumference claustrophobia collaboration comprehensive concentration congratulations conscientious
consequently constellation contemporary counterbalance determination disappearance dissatisfaction
electromagnetic embarrassment encyclopedia entrepreneurial environmental extraordinary fluorescent
forthcoming grandmother hallucination hippopotamus hypothetical identification illustration
incomprehensible independence infrastructure intelligence international interpretation kaleidoscope
knowledgeable mathematician mediterranean metamorphosis millennium misunderstanding mississippi
mountaineering neighbourhood onomatopoeia overwhelmingly parallelogram perpendicular pharmaceutical
philosophical photosynthesis pronunciation questionnaire recommendation refrigerator rehabilitation
responsibility sophisticated strawberries subterranean supercalifragilistic surveillance thermodynamics
transformation unbelievable uncomfortable understanding unnecessarily vulnerability whippersnapper
"""

COMMON: list[str] = [w for w in dict.fromkeys(_COMMON.split()) if 3 <= len(w) <= 10]
LONG: list[str] = [w for w in dict.fromkeys(_LONG.split()) if len(w) >= 11]
SHORT: list[str] = [w for w in COMMON if len(w) <= 6]
