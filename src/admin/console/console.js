(function(){'use strict';
var EVERY=Number(document.body.getAttribute('data-refresh-seconds'))||10;
function span(ms){var s=Math.floor(ms/1000),d=Math.floor(s/86400),h=Math.floor(s%86400/3600),
m=Math.floor(s%3600/60),r=s%60;
if(d>0)return d+' d '+h+' h';if(h>0)return h+' h '+m+' min';return m+' min '+r+' s';}
function tick(){var now=Date.now();
document.querySelectorAll('.countdown[data-at]').forEach(function(el){
var at=Number(el.getAttribute('data-at'))*1000;if(!isFinite(at))return;
el.textContent=at>now?'in '+span(at-now):span(now-at)+' ago';});}
function status(text){var el=document.getElementById('refresh-status');if(el)el.textContent=text;}
function refresh(){
fetch('/',{credentials:'same-origin',cache:'no-store',headers:{'Accept':'text/html'}})
.then(function(r){if(!r.ok)throw new Error(r.status===401?'sign in again (401)':'HTTP '+r.status);
return r.text();})
.then(function(text){var doc=new DOMParser().parseFromString(text,'text/html');
var next=doc.querySelector('main'),current=document.querySelector('main');
if(!next||!current)throw new Error('no data in the reply');
current.replaceWith(document.adoptNode(next));tick();
status('Refreshed '+new Date().toISOString().slice(11,19)+' UTC; every '+EVERY+' s.');})
.catch(function(e){status('Refresh failed: '+e.message+'. Showing the last data.');});}
tick();setInterval(tick,1000);setInterval(refresh,EVERY*1000);
status('Live: refreshes every '+EVERY+' s.');})();
